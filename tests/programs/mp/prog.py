"""Fixture: a spawn-method Pool mapping a recorded module function."""

import multiprocessing

import mpwork


def main():
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        print(pool.map(mpwork.square, range(6)))


if __name__ == "__main__":
    main()
