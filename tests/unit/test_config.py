"""Unit tests for flowagent.config: layering, file discovery, validation, child round trip.

Every test passes an explicit ``env`` dict; os.environ is never read or changed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flowagent import config as config_module
from flowagent.config import (
    ENV_KEYS,
    KNOWN_KEYS,
    Config,
    describe_keys,
    find_config_file,
    load_config,
    to_child_env,
    validate_glob,
)
from flowagent.errors import ConfigError, FlowagentError


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A clean directory with no config file anywhere above it."""
    assert find_config_file(tmp_path) is None, "a config file above tmp_path would skew tests"
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load(cwd: Path, env: dict[str, str] | None = None, **cli: object) -> Config:
    return load_config(cwd, env or {}, cli)


def sources(cfg: Config) -> dict[str, str]:
    return dict(cfg.sources)


# -- defaults and layering ---------------------------------------------------------------------

def test_defaults(root: Path) -> None:
    cfg = load(root)
    expected = Config(data_dir=str(root / ".flowagent"))
    assert cfg._replace(sources=()) == expected
    assert cfg.ring_size == 8 * 1024 * 1024
    assert set(sources(cfg).values()) == {"default"}
    assert set(sources(cfg)) == KNOWN_KEYS


def test_file_overrides_defaults(root: Path) -> None:
    path = write(root / "flowagent.toml", 'include = ["shop", "shop.*"]\nbackend = "wrap"\n')
    cfg = load(root)
    assert cfg.include == ("shop", "shop.*")
    assert cfg.backend == "wrap"
    assert sources(cfg)["include"] == str(path)
    assert sources(cfg)["exclude"] == "default"


def test_env_overrides_file(root: Path) -> None:
    write(root / "flowagent.toml", 'include = ["shop"]\nbackend = "wrap"\nverbose = true\n')
    cfg = load(root, {"FLOWAGENT_INCLUDE": "billing", "FLOWAGENT_BACKEND": "profile"})
    assert cfg.include == ("billing",)
    assert cfg.backend == "profile"
    assert cfg.verbose is True  # untouched by env: the file's value stays
    assert sources(cfg)["include"] == "FLOWAGENT_INCLUDE"


def test_cli_overrides_env_and_file(root: Path) -> None:
    write(root / "flowagent.toml", 'include = ["shop"]\nexclude = ["shop.tests"]\n')
    env = {"FLOWAGENT_INCLUDE": "billing,shipping", "FLOWAGENT_BACKEND": "profile"}
    cfg = load(root, env, include=["api"], backend="wrap", exclude=None)
    # --include replaces the lower layers' lists; it does not extend them.
    assert cfg.include == ("api",)
    assert cfg.backend == "wrap"
    assert cfg.exclude == ("shop.tests",)  # None = not given
    assert sources(cfg)["include"] == "--include"
    assert sources(cfg)["exclude"].endswith("flowagent.toml")


def test_cli_accepts_text_and_dash_names(root: Path) -> None:
    cfg = load_config(root, {}, {"ring-size": "512KiB", "verbose": "yes", "include": ["a,b", "c"],
                                 "sample_rate": "0.5", "flush_interval_ms": 10})
    assert cfg.ring_size == 512 * 1024
    assert cfg.verbose is True
    assert cfg.include == ("a", "b", "c")
    assert cfg.sample_rate == 0.5
    assert cfg.flush_interval_ms == 10


def test_cli_empty_list_clears(root: Path) -> None:
    write(root / "flowagent.toml", 'include = ["shop"]\n')
    assert load(root, include=[]).include == ()


def test_cli_unknown_key_and_bad_value(root: Path) -> None:
    with pytest.raises(ConfigError, match="inclde"):
        load(root, inclde=["x"])
    with pytest.raises(ConfigError, match="--flush-interval-ms"):
        load(root, flush_interval_ms=0)
    with pytest.raises(ConfigError, match="--include"):
        load(root, include=["shop/api.py"])


def test_env_empty_list_clears_file_but_empty_scalar_is_unset(root: Path) -> None:
    write(root / "flowagent.toml", 'include = ["shop"]\nbackend = "wrap"\n')
    cfg = load(root, {"FLOWAGENT_INCLUDE": "", "FLOWAGENT_BACKEND": "  "})
    assert cfg.include == ()
    assert cfg.backend == "wrap"


def test_internal_env_vars_are_ignored(root: Path) -> None:
    env = {"FLOWAGENT_RUN_DIR": "/nowhere", "FLOWAGENT_RUN_ID": "x", "FLOWAGENT_PREFIX": "?",
           "FLOWAGENT_PURE": "maybe", "FLOWAGENT_PARENT": "1", "FLOWAGENT_SOMETHING": "[",
           "PATH": "/bin"}
    assert load(root, env)._replace(sources=()) == \
        load(root)._replace(sources=())


# -- file discovery ----------------------------------------------------------------------------

def test_pyproject_table(root: Path) -> None:
    path = write(root / "pyproject.toml", '[project]\nname = "x"\n\n[tool.flowagent]\n'
                 'exclude = ["shop.tests.*"]\n')
    assert find_config_file(root) == path
    assert load(root).exclude == ("shop.tests.*",)


def test_flowagent_toml_wins_over_pyproject_in_same_dir(root: Path) -> None:
    write(root / "pyproject.toml", '[tool.flowagent]\nbackend = "profile"\n')
    own = write(root / "flowagent.toml", 'backend = "wrap"\n')
    assert find_config_file(root) == own
    assert load(root).backend == "wrap"


def test_walks_up_to_nearest(root: Path) -> None:
    outer = write(root / "flowagent.toml", 'backend = "profile"\n')
    inner = write(root / "a" / "pyproject.toml", '[tool.flowagent]\nbackend = "wrap"\n')
    deep = root / "a" / "b" / "c"
    deep.mkdir(parents=True)
    assert find_config_file(deep) == inner
    assert load(deep).backend == "wrap"
    assert find_config_file(root / "a" / "..") == outer


def test_pyproject_without_table_is_skipped(root: Path) -> None:
    outer = write(root / "flowagent.toml", 'backend = "monitor"\n')
    write(root / "pkg" / "pyproject.toml",
          '[project]\nname = "pkg"\n[tool.black]\nline-length = 99\n')
    # Mentions flowagent, but only as a dependency: still no [tool.flowagent] table.
    write(root / "pkg" / "sub" / "pyproject.toml", '[project]\ndependencies = ["flowagent"]\n')
    assert find_config_file(root / "pkg" / "sub") == outer
    assert load(root / "pkg" / "sub").backend == "monitor"


def test_unrelated_broken_pyproject_is_skipped(root: Path) -> None:
    write(root / "pyproject.toml", "[project\nthis is not toml")
    assert find_config_file(root) is None


def test_tool_flowagent_must_be_table(root: Path) -> None:
    write(root / "pyproject.toml", '[tool]\nflowagent = "yes"\n')
    with pytest.raises(ConfigError, match=r"\[tool\.flowagent\].*must be a table"):
        load(root)


def test_relative_data_dir_in_file_is_relative_to_file(root: Path) -> None:
    write(root / "flowagent.toml", 'data-dir = "runs/data"\n')
    cwd = root / "src" / "app"
    cwd.mkdir(parents=True)
    assert load(cwd).data_dir == str(root / "runs" / "data")
    # ...while env and CLI paths are relative to the working directory.
    assert load(cwd, {"FLOWAGENT_DATA_DIR": "out"}).data_dir == str(cwd / "out")
    assert load(cwd, data_dir=Path("cli")).data_dir == str(cwd / "cli")
    assert load(cwd, data_dir="/abs/dir").data_dir == os.path.normpath("/abs/dir")


def test_dash_and_underscore_spellings(root: Path) -> None:
    write(root / "flowagent.toml", 'ring-size = "1MiB"\nflush_interval_ms = 7\nsample-rate = 1\n')
    cfg = load(root)
    assert (cfg.ring_size, cfg.flush_interval_ms, cfg.sample_rate) == (1024 * 1024, 7, 1.0)
    assert isinstance(cfg.sample_rate, float)


def test_both_spellings_in_one_file(root: Path) -> None:
    write(root / "flowagent.toml", 'data-dir = "a"\ndata_dir = "b"\n')
    with pytest.raises(ConfigError, match="set twice"):
        load(root)


# -- file errors -------------------------------------------------------------------------------

def test_unknown_key_message(root: Path) -> None:
    path = write(root / "flowagent.toml", 'inclde = ["shop"]\n')
    with pytest.raises(ConfigError) as info:
        load(root)
    message = str(info.value)
    assert "'inclde'" in message
    assert str(path) in message
    assert "did you mean 'include'?" in message
    for key in KNOWN_KEYS:
        assert key in message


def test_unknown_key_without_close_match(root: Path) -> None:
    write(root / "pyproject.toml", '[tool.flowagent]\nzzzzzz = 1\n')
    with pytest.raises(ConfigError) as info:
        load(root)
    assert "did you mean" not in str(info.value)
    assert "valid keys" in str(info.value)


def test_unknown_nested_table(root: Path) -> None:
    write(root / "pyproject.toml", '[tool.flowagent.backends]\nwrap = true\n')
    with pytest.raises(ConfigError, match="'backends'"):
        load(root)


def test_bad_toml(root: Path) -> None:
    path = write(root / "flowagent.toml", 'include = ["shop"\nbackend = "wrap"\n')
    with pytest.raises(ConfigError) as info:
        load(root)
    message = str(info.value)
    assert str(path) in message
    assert "line" in message and "column" in message
    assert "fix" in message


def test_bad_toml_in_pyproject_with_table(root: Path) -> None:
    path = write(root / "pyproject.toml", '[tool.flowagent]\ninclude = [\n')
    with pytest.raises(ConfigError, match=str(path)):
        find_config_file(root)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('include = "shop"', "a list of strings"),
        ("include = [1, 2]", "a list of strings"),
        ("hooks = \"a:b\"", "a list of strings"),
        ("data_dir = 3", "a string"),
        ("data_dir = \"\"", "a string"),
        ("enabled = \"no\"", "true or false"),
        ("nested = 1", "true or false"),
        ("verbose = []", "true or false"),
        ("flush_interval_ms = 1.5", "an integer"),
        ("flush_interval_ms = true", "an integer"),
        ("retention_sessions = \"10\"", "an integer"),
        ("sample_rate = \"half\"", "a number"),
        ("sample_rate = false", "a number"),
        ("ring_size = 1.5", "an integer number of bytes"),
        ("ring_size = true", "an integer number of bytes"),
    ],
)
def test_wrong_types(root: Path, line: str, expected: str) -> None:
    path = write(root / "flowagent.toml", line + "\n")
    key = line.split(" ")[0]
    with pytest.raises(ConfigError) as info:
        load(root)
    message = str(info.value)
    assert f"'{key}'" in message and str(path) in message and expected in message


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ('backend = "fast"', "auto, wrap, profile, monitor"),
        ("flush_interval_ms = 0", "between 1 and 10000"),
        ("flush_interval_ms = 10001", "between 1 and 10000"),
        ("retention_sessions = -1", "0 or more"),
        ("sample_rate = 0", "greater than 0"),
        ("sample_rate = 1.5", "at most 1"),
        ("sample_rate = nan", "greater than 0"),
        ("ring_size = 1024", "between 64KiB and 1GiB"),
        ('ring_size = "2GiB"', "between 64KiB and 1GiB"),
        ('hooks = ["nocolon"]', "package.module:function"),
        ('hooks = ["a.b:"]', "package.module:function"),
        ('hooks = ["a-b:c"]', "package.module:function"),
    ],
)
def test_bad_values_in_file(root: Path, line: str, fragment: str) -> None:
    path = write(root / "flowagent.toml", line + "\n")
    with pytest.raises(ConfigError) as info:
        load(root)
    assert fragment in str(info.value) and str(path) in str(info.value)


def test_valid_values_at_bounds(root: Path) -> None:
    write(root / "flowagent.toml", 'flush_interval_ms = 10000\nretention_sessions = 0\n'
          'sample_rate = 0.01\nring_size = 65536\nhooks = ["pkg.mod:func", "m:Cls.method"]\n'
          'backend = "monitor"\nenabled = false\nnested = false\n')
    cfg = load(root)
    assert cfg.flush_interval_ms == 10000 and cfg.retention_sessions == 0
    assert cfg.sample_rate == 0.01 and cfg.ring_size == 65536
    assert cfg.hooks == ("pkg.mod:func", "m:Cls.method")
    assert (cfg.backend, cfg.enabled, cfg.nested) == ("monitor", False, False)


def test_config_error_is_flowagent_error() -> None:
    assert issubclass(ConfigError, FlowagentError) and ConfigError.exit_code == 2


# -- globs -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "pattern",
    ["shop", "shop.*", "shop.api", "*", "shop.?pi", "shop.[ab]pi", "shop.[!t]*", "v[0-9].api",
     "_private", "Shop2.sub_mod", "*.views", "café"],
)
def test_valid_globs(pattern: str) -> None:
    assert validate_glob(pattern, "test") == pattern


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        ("", "non-empty"),
        ("shop/api.py", "module globs use dots, not paths: did you mean 'shop.api'?"),
        ("./shop/api", "did you mean 'shop.api'?"),
        ("shop\\api\\views.py", "did you mean 'shop.api.views'?"),
        ("shop/__init__.py", "did you mean 'shop'?"),
        ("src/shop/", "did you mean 'src.shop'?"),
        ("shop.py", "did you mean 'shop'?"),
        ("shop api", "whitespace"),
        ("shop\t", "whitespace"),
        (".shop", "dots"),
        ("shop.", "dots"),
        ("shop..api", "dots"),
        ("shop.[ab", "unbalanced"),
        ("shop.ab]", "unbalanced"),
        ("shop.[a[b]", "unbalanced"),
        ("shop.[]", "empty"),
        ("shop.[!]", "empty"),
        ("shop!", "'!'"),
        ("my-shop", "'-'"),
        ("shop,api", "','"),
        ("shop:api", "':'"),
    ],
)
def test_invalid_globs(pattern: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_glob(pattern, "somewhere.toml")
    message = str(info.value)
    assert fragment in message
    assert repr(pattern) in message and "somewhere.toml" in message


def test_bad_glob_names_file_env_and_option(root: Path) -> None:
    path = write(root / "flowagent.toml", 'exclude = ["shop/tests"]\n')
    with pytest.raises(ConfigError) as info:
        load(root)
    assert str(path) in str(info.value) and "'shop.tests'" in str(info.value)
    path.unlink()
    with pytest.raises(ConfigError, match="FLOWAGENT_INCLUDE"):
        load(root, {"FLOWAGENT_INCLUDE": "shop..x", "FLOWAGENT_EXCLUDE": ""})
    with pytest.raises(ConfigError, match="--exclude"):
        load(root, exclude=["a b"])


# -- environment -------------------------------------------------------------------------------

def test_env_keys_cover_every_key() -> None:
    assert set(ENV_KEYS.values()) == KNOWN_KEYS
    assert all(var == "FLOWAGENT_" + key.upper() for var, key in ENV_KEYS.items())
    assert "sources" not in KNOWN_KEYS


@pytest.mark.parametrize(
    ("var", "text", "key", "value"),
    [
        ("FLOWAGENT_INCLUDE", " shop , shop.* ,, ", "include", ("shop", "shop.*")),
        ("FLOWAGENT_EXCLUDE", "shop.tests,shop.tests.*", "exclude", ("shop.tests", "shop.tests.*")),
        ("FLOWAGENT_BACKEND", "Profile", "backend", "profile"),
        ("FLOWAGENT_ENABLED", "0", "enabled", False),
        ("FLOWAGENT_ENABLED", "OFF", "enabled", False),
        ("FLOWAGENT_ENABLED", "Yes", "enabled", True),
        ("FLOWAGENT_NESTED", "false", "nested", False),
        ("FLOWAGENT_NESTED", "no", "nested", False),
        ("FLOWAGENT_VERBOSE", "on", "verbose", True),
        ("FLOWAGENT_VERBOSE", "TRUE", "verbose", True),
        ("FLOWAGENT_VERBOSE", "1", "verbose", True),
        ("FLOWAGENT_RING_SIZE", "4M", "ring_size", 4 * 1024 * 1024),
        ("FLOWAGENT_RING_SIZE", "131072", "ring_size", 131072),
        ("FLOWAGENT_FLUSH_INTERVAL_MS", " 250 ", "flush_interval_ms", 250),
        ("FLOWAGENT_SAMPLE_RATE", "0.25", "sample_rate", 0.25),
        ("FLOWAGENT_SAMPLE_RATE", "1", "sample_rate", 1.0),
        ("FLOWAGENT_HOOKS", "a.b:c, d:e.f", "hooks", ("a.b:c", "d:e.f")),
        ("FLOWAGENT_RETENTION_SESSIONS", "0", "retention_sessions", 0),
    ],
)
def test_each_env_var(root: Path, var: str, text: str, key: str, value: object) -> None:
    cfg = load(root, {var: text})
    assert getattr(cfg, key) == value
    assert sources(cfg)[key] == var


def test_env_data_dir(root: Path) -> None:
    assert load(root, {"FLOWAGENT_DATA_DIR": "/tmp/x/../runs"}).data_dir == "/tmp/runs"
    home = os.path.expanduser("~")
    assert load(root, {"FLOWAGENT_DATA_DIR": "~/fa"}).data_dir == os.path.join(home, "fa")


@pytest.mark.parametrize(
    ("var", "text"),
    [
        ("FLOWAGENT_INCLUDE", "shop/api.py"),
        ("FLOWAGENT_EXCLUDE", "a b"),
        ("FLOWAGENT_BACKEND", "turbo"),
        ("FLOWAGENT_ENABLED", "2"),
        ("FLOWAGENT_ENABLED", "enabled"),
        ("FLOWAGENT_NESTED", "y"),
        ("FLOWAGENT_VERBOSE", "verbose"),
        ("FLOWAGENT_RING_SIZE", "8 parsecs"),
        ("FLOWAGENT_RING_SIZE", "1K"),
        ("FLOWAGENT_RING_SIZE", "-8M"),
        ("FLOWAGENT_FLUSH_INTERVAL_MS", "fast"),
        ("FLOWAGENT_FLUSH_INTERVAL_MS", "1.5"),
        ("FLOWAGENT_FLUSH_INTERVAL_MS", "0"),
        ("FLOWAGENT_SAMPLE_RATE", "half"),
        ("FLOWAGENT_SAMPLE_RATE", "0"),
        ("FLOWAGENT_SAMPLE_RATE", "inf"),
        ("FLOWAGENT_HOOKS", "nocolon"),
        ("FLOWAGENT_RETENTION_SESSIONS", "-5"),
        ("FLOWAGENT_RETENTION_SESSIONS", "many"),
    ],
)
def test_bad_env_values_name_the_variable(root: Path, var: str, text: str) -> None:
    with pytest.raises(ConfigError, match=var):
        load(root, {var: text})


# -- ring size units ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("65536", 65536), ("64KiB", 65536), ("64k", 65536), ("64 KB", 65536), ("512KiB", 524288),
        ("8MiB", 8 << 20), ("8mib", 8 << 20), ("4M", 4 << 20), ("4MB", 4 << 20),
        ("1GiB", 1 << 30), ("1g", 1 << 30), ("0.5M", 512 << 10), ("1048576B", 1 << 20),
    ],
)
def test_ring_size_units(root: Path, text: str, size: int) -> None:
    assert load(root, {"FLOWAGENT_RING_SIZE": text}).ring_size == size
    write(root / "flowagent.toml", f'ring_size = "{text}"\n')
    assert load(root).ring_size == size


@pytest.mark.parametrize("text", ["", "MiB", "8XiB", "8 M i B", "1.5.2M", "0x100000"])
def test_ring_size_bad_strings(root: Path, text: str) -> None:
    write(root / "flowagent.toml", f'ring_size = "{text}"\n')
    with pytest.raises(ConfigError, match="ring_size"):
        load(root)


# -- child environment round trip --------------------------------------------------------------

ROUND_TRIP_CASES = [
    Config(),
    Config(include=("shop", "shop.*"), exclude=("shop.tests.*",), backend="wrap",
           enabled=False, nested=False, verbose=True, ring_size=65536, flush_interval_ms=1,
           sample_rate=0.1, hooks=("a.b:c", "d:e"), retention_sessions=0),
    Config(sample_rate=1 / 3, ring_size=1 << 30, flush_interval_ms=10000, backend="monitor"),
]


@pytest.mark.parametrize("cfg", ROUND_TRIP_CASES)
def test_round_trip_through_child_env(root: Path, cfg: Config) -> None:
    cfg = load_config(root, {}, {name: getattr(cfg, name) for name in cfg._fields
                                 if name != "sources"})
    child_env = to_child_env(cfg)
    assert set(child_env) == set(ENV_KEYS)
    assert all(isinstance(v, str) for v in child_env.values())
    again = load_config(root / "elsewhere", child_env, {})
    assert again._replace(sources=()) == cfg._replace(sources=())


def test_child_env_beats_child_file(root: Path) -> None:
    cfg = load(root, include=["shop"], backend="wrap")
    write(root / "child" / "flowagent.toml", 'include = ["other"]\nexclude = ["x"]\n'
          'backend = "profile"\n')
    again = load_config(root / "child", to_child_env(cfg), {})
    assert again._replace(sources=()) == cfg._replace(sources=())


def test_child_env_shapes(root: Path) -> None:
    cfg = Config(include=("a", "b.*"), data_dir="rel", enabled=False, verbose=True)
    env = to_child_env(cfg)
    assert env["FLOWAGENT_INCLUDE"] == "a,b.*"
    assert env["FLOWAGENT_EXCLUDE"] == ""
    assert env["FLOWAGENT_ENABLED"] == "0" and env["FLOWAGENT_VERBOSE"] == "1"
    assert os.path.isabs(env["FLOWAGENT_DATA_DIR"])
    assert env["FLOWAGENT_RING_SIZE"] == str(8 * 1024 * 1024)


# -- documentation -----------------------------------------------------------------------------

def test_describe_keys_matches_config() -> None:
    rows = describe_keys()
    assert [row[0] for row in rows] == [name for name in Config._fields
                                        if name != "sources"]
    assert {row[1] for row in rows} == set(ENV_KEYS)
    assert all(row[3] for row in rows)


def test_module_docstring_documents_every_key() -> None:
    doc = config_module.__doc__ or ""
    for key, var, _default, _meaning in describe_keys():
        assert f"``{key}``" in doc and var in doc
    assert doc.index("defaults") < doc.index("config file") < doc.index("environment") \
        < doc.index("command line")
