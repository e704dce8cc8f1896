"""Trust settings through the plan, `mirrord check`, the report, metrics and /status."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from mirrord.cli import main
from mirrord.core.events import ImageRejected
from mirrord.daemon.service import Service
from mirrord.observe.metrics import Metrics
from mirrord.plan import PlanError, check_secrets, parse_plan, plan_to_dict
from mirrord.sync.report import EntryReport, ImageReport
from mirrord.sync.trust import open_trust
from mirrord.trust.keys import write_key_pair


def _plan_text(tmp_path: Path, target: str, policy: str = "") -> str:
    return f"version: 1\n{policy}sync:\n  - source: src.example/app:1\n    target: {target}\n"


@pytest.fixture
def key(tmp_path: Path) -> Path:
    (tmp_path / "pass").write_text("correct horse\n")
    key_file, _ = write_key_pair(tmp_path / "mirror", b"correct horse")
    return key_file


def test_sign_parses_and_check_output_shows_paths_only(tmp_path: Path, key: Path) -> None:
    target = f"{{ref: dst.example/app, sign: {{key_file: {key}, passphrase_file: {tmp_path / 'pass'}}}}}"
    plan = parse_plan(_plan_text(tmp_path, target), "p.yaml")
    sign = plan.entries[0].targets[0].sign
    assert sign is not None
    assert sign.key_file == str(key)
    assert sign.key == "sync[0].target.sign"
    shown = yaml.safe_dump(plan_to_dict(plan))
    assert str(key) in shown
    assert "correct horse" not in shown
    assert parse_plan(yaml.safe_dump(plan_to_dict(plan)), "p.yaml") == plan
    trust = open_trust(plan)
    assert trust.signer(plan.entries[0].targets[0]) is not None


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("{ref: 'oci:/srv/x', sign: {key_file: /k}}", "sign: needs a registry target"),
        ("{ref: dst.example/a, sign: {passphrase_env: X}}", "sign: needs key_file"),
        ("{ref: dst.example/a, sign: {key_file: /k, passphrase_env: X, passphrase_file: /p}}", "not both"),
        ("{ref: dst.example/a, sign: {key_file: /k, passphrase: x}}", "unknown key"),
    ],
)
def test_bad_sign_settings(tmp_path: Path, target: str, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        parse_plan(_plan_text(tmp_path, target), "p.yaml")


def test_wrong_passphrase_and_missing_files_name_line_and_key(tmp_path: Path, key: Path) -> None:
    (tmp_path / "wrong").write_text("battery staple\n")
    target = f"{{ref: dst.example/app, sign: {{key_file: {key}, passphrase_file: {tmp_path / 'wrong'}}}}}"
    with pytest.raises(PlanError) as info:
        open_trust(parse_plan(_plan_text(tmp_path, target), "p.yaml"))
    assert str(info.value).startswith("p.yaml:4: sync[0].target.sign: ")
    assert "wrong passphrase" in str(info.value)
    assert "battery staple" not in str(info.value)
    target = "{ref: dst.example/app, sign: {key_file: /nonexistent.key}}"
    with pytest.raises(PlanError, match=r"p.yaml:4: sync\[0\].target.sign.key_file: cannot read"):
        check_secrets(parse_plan(_plan_text(tmp_path, target), "p.yaml"))


def test_check_names_the_policy_file_and_key_of_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "sigstoreSigned", "keyPath": "/gone.pub"}]}))
    plan = tmp_path / "plan.yaml"
    plan.write_text(_plan_text(tmp_path, "dst.example/app", f"policy: {policy}\n"))
    assert main(["check", "-c", str(plan)]) == 2
    err = capsys.readouterr().err
    assert f"{plan}:2: policy: {policy}: default[0].keyPath: cannot read /gone.pub" in err
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}],
                                  "transports": {"oci": {"": [{"type": "reject"}]}}}))  # fmt: skip
    assert main(["check", "-c", str(plan)]) == 0
    out = capsys.readouterr()
    assert f"policy: {policy}" in out.out
    assert "transport 'oci' ignored" in out.err


def test_rejected_images_fail_the_entry_count_in_metrics_and_show_in_status(tmp_path: Path) -> None:
    report = EntryReport("e", started=time.time())
    refused = ImageReport("e", "src/app:2", "rejected", error="signature policy p (scope s): why")
    report.images = [ImageReport("e", "src/app:1", "copied"), refused]
    assert not report.ok
    metrics = Metrics()
    metrics.declare_entries(["e"])
    assert b'mirrord_images_total{entry="e",result="rejected"} 0.0' in metrics.render()
    metrics.observe(ImageRejected("e", "src/app:2", "why"))
    assert b'mirrord_images_total{entry="e",result="rejected"} 1.0' in metrics.render()
    plan = tmp_path / "plan.yaml"
    plan.write_text(_plan_text(tmp_path, "dst.example/app").replace("  - source", "  - name: e\n    source"))
    service = Service(plan)
    service._load()
    service._record(service._status["e"], report)
    status = service.status()["entries"]["e"]
    assert status["images"]["rejected"] == 1
    assert status["last_error"] == "signature policy p (scope s): why"


def test_the_daemon_refuses_a_plan_whose_policy_is_broken(tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    plan = tmp_path / "plan.yaml"
    plan.write_text(_plan_text(tmp_path, "dst.example/app", f"policy: {policy}\n"))
    service = Service(plan)
    service._load()
    assert service._trust.gate is not None
    kept = service._trust
    policy.write_text(json.dumps({"default": [{"type": "trustMe"}]}))
    with pytest.raises(
        PlanError, match=r"plan.yaml:2: policy: .*default\[0\].type: unknown requirement type"
    ):
        service._load()
    assert service._trust is kept  # a rejected reload keeps what was running
