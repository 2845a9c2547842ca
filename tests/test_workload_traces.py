"""Trace files: the shipped Azure 2023 traces, their statistics, and malformed files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from llmtwin.errors import CatalogFileError, UnknownTrace
from llmtwin.workload.stats import stream_stats, trace_stats
from llmtwin.workload.traces import load_trace, trace_names


def write_csv(tmp_path: Path, body: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def test_shipped_traces_are_named_azure_conv_and_azure_code() -> None:
    """Both Azure LLM 2023 traces ship with the package and load by name."""
    assert {"azure-conv", "azure-code"} <= set(trace_names())
    assert len(load_trace("azure-conv")) == 19_366
    assert len(load_trace("azure-code")) == 8_819


def test_azure_conv_statistics_match_the_published_ones() -> None:
    """Conversation trace: the SplitwiseSim docstring's mean/std/min/max and the Splitwise medians."""
    st = trace_stats(load_trace("azure-conv"))
    assert (st.prompt_tokens.min, st.prompt_tokens.max) == (2, 14_050)
    assert round(st.prompt_tokens.mean) == 1155
    assert round(st.prompt_tokens.std) == 1109
    assert st.prompt_tokens.median == 1020
    assert (st.output_tokens.min, st.output_tokens.max) == (7, 1000)
    assert round(st.output_tokens.mean) == 211
    assert round(st.output_tokens.std) == 163
    assert st.output_tokens.median == 129
    assert st.rate_rps == pytest.approx(5.53, abs=0.01)


def test_azure_code_statistics_match_the_published_ones() -> None:
    """Code trace: mean/std/min/max as SplitwiseSim documents them, median 1,469 / 13."""
    st = trace_stats(load_trace("azure-code"))
    assert (st.prompt_tokens.min, st.prompt_tokens.max) == (3, 7437)
    assert round(st.prompt_tokens.mean) == 2048
    assert round(st.prompt_tokens.std) == 1974
    assert st.prompt_tokens.median == 1469
    assert (st.output_tokens.min, st.output_tokens.max) == (6, 1899)
    assert round(st.output_tokens.mean) == 28
    assert round(st.output_tokens.std) == 60
    assert st.output_tokens.median == 13
    assert st.interarrival_cv > 10  # minutes-long silences between bursts


def test_timestamps_keep_sub_microsecond_precision(tmp_path: Path) -> None:
    """Date-time stamps with 7 fractional digits become exact relative seconds."""
    path = write_csv(
        tmp_path,
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,374,44\n"
        "2023-11-16 18:15:46.6805901,396,109\n"
        "2023-11-16 18:16:47.0000000,10,1\n",
    )
    t = load_trace(str(path))
    assert t.name == "t"
    np.testing.assert_allclose(t.arrival_s, [0.0, 1e-7, 60.31941], rtol=0, atol=1e-9)


def test_numeric_timestamps_are_sorted_with_their_rows(tmp_path: Path) -> None:
    """Seconds as TIMESTAMP work; out-of-order rows are sorted and keep their lengths."""
    path = write_csv(tmp_path, "TIMESTAMP,ContextTokens,GeneratedTokens\n5.0,50,5\n1.0,10,1\n3.0,30,3\n")
    t = load_trace(str(path))
    assert t.arrival_s.tolist() == [0.0, 2.0, 4.0]
    assert t.prompt_tokens.tolist() == [10, 30, 50]
    assert t.output_tokens.tolist() == [1, 3, 5]


def test_a_trace_is_read_once_until_its_file_changes(tmp_path: Path) -> None:
    """The same file gives the same (read-only) trace; a rewritten file is read again."""
    path = write_csv(tmp_path, "TIMESTAMP,ContextTokens,GeneratedTokens\n1.0,10,1\n3.0,30,3\n")
    first = load_trace(str(path))
    assert load_trace(str(path)) is first
    with pytest.raises(ValueError, match="read-only"):
        first.prompt_tokens[0] = 99
    path.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n1.0,10,1\n2.0,20,2\n4.0,40,4\n", encoding="utf-8"
    )
    again = load_trace(str(path))
    assert again.prompt_tokens.tolist() == [10, 20, 40]
    assert first.prompt_tokens.tolist() == [10, 30]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("time,prompt,output\n1,2,3\n", "header"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n", "no requests"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n1,2\n", "line 2"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,2,3\n", "TIMESTAMP"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n1,many,3\n", "ContextTokens"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n1,5,3\n2,0,3\n", "line 3"),
    ],
)
def test_malformed_trace_files_are_one_line_errors(tmp_path: Path, body: str, fragment: str) -> None:
    """Each malformed file is a CatalogFileError naming the file and what is wrong."""
    path = write_csv(tmp_path, body)
    with pytest.raises(CatalogFileError, match=fragment) as info:
        load_trace(str(path))
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_trace_name_lists_the_known_ones() -> None:
    """An unknown name is UnknownTrace and suggests the shipped names."""
    with pytest.raises(UnknownTrace, match="azure-conv"):
        load_trace("azure-chat")


def test_stream_stats_of_a_regular_stream() -> None:
    """Evenly spaced arrivals: rate 1 / gap, CV 0, percentiles of the lengths."""
    st = stream_stats([0.0, 0.5, 1.0, 1.5], [1, 2, 3, 4], [10, 10, 10, 10])
    assert (st.count, st.duration_s, st.rate_rps, st.interarrival_cv) == (4, 1.5, 2.0, 0.0)
    got = dataclasses.astuple(st.prompt_tokens)
    assert got == pytest.approx((1, 2.5, 2.5, 3.7, 3.97, 4, np.sqrt(1.25)))
