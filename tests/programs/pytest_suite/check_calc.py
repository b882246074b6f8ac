import pytest
import calc

@pytest.fixture
def store():
    s = calc.Store()
    s.put(1)
    yield s
    s.close()

def test_add(store):
    assert calc.add(1, 2) == 3

def test_div_fails():
    assert calc.div(1, 0) == 0

@pytest.mark.parametrize("a", [1, 2])
def test_param(a):
    assert calc.add(a, a) == 2 * a

@pytest.mark.skip(reason="no")
def test_skipped():
    pass

@pytest.mark.xfail
def test_xfail():
    assert calc.add(1, 1) == 3
