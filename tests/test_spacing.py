import math

import pytest

from medlung.errors import InvalidSpacingError
from medlung.spacing import check_spacing, format_spacing, parse_user_spacing


@pytest.mark.parametrize(
    "value, expected",
    [([0.1, 0.2], (0.1, 0.2)), (["0.143", "0.139"], (0.143, 0.139)), ((1, 2), (1.0, 2.0))],
)
def test_valid_spacings(value, expected):
    assert check_spacing(value) == (expected, None)


@pytest.mark.parametrize(
    "value, problem",
    [
        (None, "absent"),
        ([0, 0], "not positive"),
        ([-0.1, 0.1], "not positive"),
        ([math.nan, 0.1], "not positive"),
        ([math.inf, 0.1], "not positive"),
        ([0.1], "1 value"),
        (0.1, "1 value"),
        ([0.1, 0.2, 0.3], "3 value"),
        (["a", "b"], "not numeric"),
        ("0.1", "1 value"),
    ],
)
def test_invalid_spacings(value, problem):
    spacing, why = check_spacing(value)
    assert spacing is None and problem in why


def test_user_spacing_forms():
    assert parse_user_spacing("0.143") == (0.143, 0.143)
    assert parse_user_spacing("0.14,0.15") == (0.14, 0.15)
    assert parse_user_spacing(0.2) == (0.2, 0.2)
    assert parse_user_spacing((0.1, 0.3)) == (0.1, 0.3)
    with pytest.raises(InvalidSpacingError, match="one value in mm"):
        parse_user_spacing("zero")


def test_format():
    assert format_spacing(None) == "unknown"
    assert format_spacing((0.0875, 0.1)) == "0.0875 x 0.1 mm (row x col)"
