import pytest

from zk.field import R, FieldError, check_scalar, parse_decimal


def test_check_scalar_bounds() -> None:
    assert check_scalar(0) == 0
    assert check_scalar(R - 1) == R - 1
    with pytest.raises(FieldError):
        check_scalar(R)
    with pytest.raises(FieldError):
        check_scalar(-1)
    with pytest.raises(FieldError):
        check_scalar(True)


@pytest.mark.parametrize("bad", ["", " 1", "1 ", "01", "+1", "-1", "0x10", "1e3", "١", str(R)])
def test_parse_decimal_rejects_non_canonical(bad: str) -> None:
    with pytest.raises(FieldError):
        parse_decimal(bad)


def test_parse_decimal_accepts_canonical() -> None:
    assert parse_decimal("0") == 0
    assert parse_decimal(str(R - 1)) == R - 1
