import pytest

from toolkit.resources import data_dir


def test_data_dirs_exist_in_checkout() -> None:
    for kind in ("scenarios", "dashboards", "alerts"):
        assert data_dir(kind).is_dir()


def test_unknown_kind() -> None:
    with pytest.raises(ValueError):
        data_dir("models")
