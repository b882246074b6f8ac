"""Serves the FastAPI app with uvicorn from the program's own main()."""

import sys

import uvicorn

from shopapi import app


def main(port):
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(int(sys.argv[1]))
