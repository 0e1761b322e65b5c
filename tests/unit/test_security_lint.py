"""The policy check of the deployment (checkov, `scripts/security-lint.sh`): every finding it
accepts is skipped beside its resource with a reason, every skip is still needed, and a flaw it
exists to catch fails it."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sansnuages.tools.local.template import parse_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"

ACCEPTED = {
    "CKV_AWS_18": "S3 access logging",
    "CKV_AWS_26": "SNS encryption with KMS",
    "CKV_AWS_27": "SQS encryption with KMS (the queues use SQS-managed keys)",
    "CKV_AWS_115": "Lambda reserved concurrency (the SQS consumers use MaximumConcurrency)",
    "CKV_AWS_116": "Lambda dead-letter queue (SQS consumers dead-letter on their queue)",
    "CKV_AWS_117": "Lambda inside a VPC",
    "CKV_AWS_119": "DynamoDB with a customer managed key",
    "CKV_AWS_158": "CloudWatch log groups with a customer managed key",
    "CKV_AWS_173": "Lambda environment encrypted with a customer managed key",
}
"""The checks the template may skip, and what they ask; any other skip is refused."""


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return parse_template(TEMPLATE.read_text())


def _skips(template: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(resource, check id) -> reason, for every `Metadata: checkov: skip:` entry."""
    found = {}
    for logical_id, resource in template["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            found[logical_id, skip["id"]] = " ".join(str(skip.get("comment", "")).split())
    return found


def test_every_skip_is_an_accepted_check_with_its_reason(sam: dict[str, Any]) -> None:
    skips = _skips(sam)
    assert skips, "no skip found: the template's Metadata changed shape"
    for (logical_id, check), reason in skips.items():
        assert check in ACCEPTED, (logical_id, check)
        assert len(reason) >= 40, (logical_id, check, reason)
    # the functions consumed by SQS are bounded by MaximumConcurrency, the API by a
    # reservation; the plan and the sweeper run on schedules
    assert ("ApiFunction", "CKV_AWS_115") not in skips
    assert {lid for lid, check in skips if check == "CKV_AWS_115"} == {
        "IngestFunction",
        "CompositeFunction",
        "MosaicFunction",
        "PlanFunction",
        "SweeperFunction",
    }


def _checkov(template: dict[str, Any], tmp_path: Path) -> dict[tuple[str, str], str]:
    """Run checkov as scripts/security-lint.sh does, offline, on `template`:
    (resource, check id) -> "failed" or "skipped"."""
    if not CHECKOV.exists():
        pytest.fail(
            "checkov is not installed: `make security-lint` (run by `make test`) installs it"
        )
    folder = tmp_path / "scan"
    folder.mkdir(parents=True)
    (folder / "template.json").write_text(json.dumps(template))
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "PYTHONWARNINGS": "ignore"}
    command = [
        str(CHECKOV),
        *("--directory", str(folder), "--framework", "cloudformation"),
        *("--skip-download", "--quiet", "--compact", "--output", "json"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)  # noqa: S603
    assert done.returncode in (0, 1), done.stderr[-2000:]
    report = json.loads(done.stdout)
    results = report.get("results", {}) if isinstance(report, dict) else {}
    outcome = {}
    for kind, key in (("failed", "failed_checks"), ("skipped", "skipped_checks")):
        for check in results.get(key, []):
            logical_id = re.sub(r"^.*\.", "", check["resource"])
            outcome[logical_id, check["check_id"]] = kind
    return outcome


def test_the_template_passes_and_every_skip_is_still_needed(
    sam: dict[str, Any], tmp_path: Path
) -> None:
    as_written = _checkov(sam, tmp_path / "as-written")
    assert [k for k, kind in as_written.items() if kind == "failed"] == []
    bare = copy.deepcopy(sam)
    for resource in bare["Resources"].values():
        resource.get("Metadata", {}).pop("checkov", None)
    without_skips = _checkov(bare, tmp_path / "bare")
    failed = {k for k, kind in without_skips.items() if kind == "failed"}
    assert set(_skips(sam)) == failed  # each skip answers a real finding, and only those


def test_a_public_bucket_fails_the_check(sam: dict[str, Any], tmp_path: Path) -> None:
    flawed = copy.deepcopy(sam)
    del flawed["Resources"]["DataBucket"]["Properties"]["PublicAccessBlockConfiguration"]
    flawed["Resources"]["AlarmTopic"]["Metadata"]["checkov"]["skip"] = []
    failed = {k for k, kind in _checkov(flawed, tmp_path).items() if kind == "failed"}
    assert ("DataBucket", "CKV_AWS_53") in failed  # block public ACLs
    assert ("AlarmTopic", "CKV_AWS_26") in failed
