"""The yes/no words are defined once (flowagent.protocol.env); the interpreter-start kill
switch spells the "no" words out because it must import nothing, so this keeps them equal."""

import ast
from pathlib import Path

from flowagent.agent import bootstrap
from flowagent.protocol.env import FALSE_WORDS, TRUE_WORDS, flag

SITECUSTOMIZE = Path(__file__).resolve().parents[2] / "sitecustomize" / "sitecustomize.py"


def _string_tuples(tree: ast.AST) -> list[set[str]]:
    return [{e.value for e in node.elts} for node in ast.walk(tree)
            if isinstance(node, ast.Tuple) and node.elts
            and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts)]


def test_kill_switch_words_are_the_false_words():
    tuples = _string_tuples(ast.parse(SITECUSTOMIZE.read_text()))
    assert set(FALSE_WORDS) in tuples


def test_flag_reads_the_true_words_and_keeps_the_default_when_unset():
    for word in TRUE_WORDS:
        assert flag(f" {word.upper()} ", False) is True
    for word in FALSE_WORDS:
        assert flag(word, True) is False
    assert flag(None, True) is True and flag("", False) is False
    assert flag("maybe", True) is False  # anything else is off, as the agent always read it


def test_agent_switches_use_the_shared_words():
    assert bootstrap._flag is flag
