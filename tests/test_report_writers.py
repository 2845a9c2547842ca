"""requests.csv / instances.csv format and byte stability."""

from __future__ import annotations

import numpy as np
import pytest
from report_builders import make_request, make_result

from llmtwin.report.writers import REQUEST_COLUMNS, cell, instances_csv, json_text, requests_csv
from llmtwin.scenario.spec import SLOSpec

GOLDEN_REQUESTS = (
    "rid,arrival_s,prompt_tokens,output_tokens,generated_tokens,first_token_s,completion_s,ttft_s,e2e_s,"
    "tbt_mean_s,tbt_p90_s,tbt_p99_s,tbt_max_s,instances,preemptions,kv_bytes_moved,meets_slo,failed_reason\n"
    "0,0.0,10,3,3,1.0,2.0,1.0,2.0,0.5,0.5,0.5,0.5,0;1,0,1500000.0,1,\n"
    "1,1.0,10,4,4,1.5,2.4,0.5,1.4,0.3,0.5199999999999999,0.5919999999999999,0.5999999999999999,0,2,0.0,0,\n"
    "2,2.0,10,5,0,,,,,,,,,0,0,0.0,0,prompt too long\n"
)


def test_requests_csv_matches_the_golden_text() -> None:
    """Fixed columns, repr floats, ';'-joined instances, empty cells for missing values."""
    assert requests_csv(make_result(), SLOSpec(ttft_s=1.0, tbt_s=0.5)) == GOLDEN_REQUESTS


def test_requests_csv_is_sorted_by_rid_whatever_the_record_order() -> None:
    """Records in any order give byte-identical text."""
    a = make_result()
    b = make_result(requests=list(reversed(a.requests)))
    assert requests_csv(a, SLOSpec()) == requests_csv(b, SLOSpec())
    assert requests_csv(a, SLOSpec()).encode() == requests_csv(make_result(), SLOSpec()).encode()


def test_numpy_scalars_are_written_as_plain_numbers() -> None:
    """A numpy float in a record is written like the Python float, never as 'np.float64(...)'."""
    recs = make_result().requests
    recs[0].kv_bytes_moved = np.float64(1.5e6)  # type: ignore[assignment]
    assert "np." not in requests_csv(make_result(requests=recs), SLOSpec())
    assert cell(np.float64(0.1)) == "0.1"
    assert cell(float("nan")) == ""
    assert cell(True) == "1"


def test_fields_with_commas_are_quoted() -> None:
    """A failure reason with a comma stays one CSV field."""
    r = make_result(requests=[make_request(0, 0.0, [], output=2, failed="no room, queue full")])
    last = requests_csv(r, SLOSpec()).splitlines()[-1]
    assert last.endswith('"no room, queue full"')
    assert len(REQUEST_COLUMNS) == 18


def test_instances_csv_has_per_role_busy_and_kv_figures() -> None:
    """One row per instance: busy per role, busy fraction of the span, KV peaks and time-weighted mean."""
    lines = instances_csv(make_result()).splitlines()
    header = lines[0].split(",")
    row = dict(zip(header, lines[1].split(","), strict=True))
    assert header[:5] == ["iid", "devices", "busy_prefill_s", "busy_decode_s", "busy_mixed_s"]
    assert float(row["busy_fraction"]) == 1.6 / 2.4
    assert float(row["kv_peak_total_bytes"]) == 1.5e9
    assert (float(row["idle_prefill_s"]), float(row["idle_decode_s"]), float(row["idle_s"])) == (
        0.3,
        0.5,
        0.8,
    )
    # 0 for 1 s, 1e9 for 1 s, 1.5e9 for 0.4 s, over 2.4 s
    assert abs(float(row["kv_mean_total_bytes"]) - 1.6e9 / 2.4) < 1.0
    assert len(lines) == 3


def test_extra_roles_get_their_own_column() -> None:
    """A role outside prefill/decode/mixed still appears, after the fixed ones."""
    r = make_result()
    r.instances[1].busy_s["transfer"] = 0.3
    header = instances_csv(r).splitlines()[0].split(",")
    assert header[2:6] == ["busy_prefill_s", "busy_decode_s", "busy_mixed_s", "busy_transfer_s"]
    assert header[7:11] == ["idle_prefill_s", "idle_decode_s", "idle_mixed_s", "idle_transfer_s"]


def test_json_text_refuses_nan() -> None:
    """NaN is not JSON; the writer fails rather than emit an invalid file."""
    with pytest.raises(ValueError, match="JSON"):
        json_text({"x": float("nan")})
