"""The list flags of ``asrtk bench``: ``--scrape`` URLs and ``--target-pids`` (``toolkit.units``)."""

from __future__ import annotations

import pytest

from toolkit.errors import UsageError
from toolkit.units import parse_pid_list, parse_url_list


@pytest.mark.parametrize("values, want", [
    (["http://a:8001/metrics"], ["http://a:8001/metrics"]),
    (["http://a:8001/metrics,http://b:8002/metrics"], ["http://a:8001/metrics", "http://b:8002/metrics"]),
    (["http://a/metrics, https://b/metrics ,", "http://c/metrics"],
     ["http://a/metrics", "https://b/metrics", "http://c/metrics"]),
    # repeated and comma lists mix; each URL once, first place kept
    (["http://a/m,http://b/m", "http://a/m"], ["http://a/m", "http://b/m"]),
    # a comma inside a URL is not a separator: only ",SCHEME://" starts the next one
    (['http://prom:9090/federate?match[]={job="asr",instance="x"}'],
     ['http://prom:9090/federate?match[]={job="asr",instance="x"}']),
    (['http://p/federate?match[]={a="1",b="2"},HTTP://q/metrics'],
     ['http://p/federate?match[]={a="1",b="2"}', "HTTP://q/metrics"]),
    ([], []),
    ([" , "], []),
])
def test_scrape_urls_split_on_commas_that_start_a_url(values: list[str], want: list[str]) -> None:
    assert parse_url_list(values, "--scrape") == want


@pytest.mark.parametrize("value", ["a:8001/metrics", "ftp://a/metrics", "http://a/m,ftp://b/m", "http://"])
def test_a_scrape_value_that_is_not_a_url_is_named_and_its_password_is_not(value: str) -> None:
    with pytest.raises(UsageError, match=r"^--scrape takes http\(s\) URLs like http://127.0.0.1:8001/metrics"):
        parse_url_list([value], "--scrape")
    with pytest.raises(UsageError) as exc:
        parse_url_list(["ftp://user:s3cret@a/metrics"], "--scrape")
    assert "s3cret" not in str(exc.value) and "ftp://a/metrics" in str(exc.value)


def test_a_comma_in_a_host_or_path_is_a_list_missing_a_scheme() -> None:
    with pytest.raises(UsageError, match=r"^--scrape: 'http://a:1/metrics,b:2/metrics' has a comma before its query"):
        parse_url_list(["http://a:1/metrics,b:2/metrics"], "--scrape")


def test_pids_are_repeatable_and_comma_lists() -> None:
    assert parse_pid_list(["1200", "1300, 1310", "1200"], "--target-pids") == [1200, 1300, 1310]
    assert parse_pid_list([], "--target-pids") == []


@pytest.mark.parametrize("value", ["0", "-5", "12a", "1.5", "nginx"])
def test_a_bad_pid_is_named(value: str) -> None:
    with pytest.raises(UsageError, match=rf"^--target-pids takes process ids like 1200 or 1200,1300 \(repeatable\), "
                                         rf"got '{value}'$"):
        parse_pid_list([f"1200,{value}"], "--target-pids")
