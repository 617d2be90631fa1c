"""A stand-in `pulumi` CLI that the Automation API really spawns.

`install(tmp_path, scenario)` writes `<root>/bin/pulumi` (this file run by the test's Python) and a scenario
file; the stand-in answers the commands the fleet's engine code makes, streams the scenario's recorded engine
events to the SDK exactly as CLI 3.272 does (gRPC on the `--event-log tcp://…` address), prints the scenario's
stdout/stderr and exits with its code. Every call is appended to `<root>/calls.jsonl` (argv, cwd and the
FLEET_* environment) so tests can assert what was run. An unexpected command fails loudly (exit 99).

Scenario keys: "version"; per operation ("select", "preview", "refresh", "up", "outputs", "history", "config"):
{"events": [event dicts], "stdout": str, "stderr": str, "exit": int}, or a list of them answered in turn;
"outputs" has "value" (the stack outputs), "config" has "value" ({key: plain value}; gitlab:token is a secret).
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any


def install(tmp_path: Path, scenario: dict[str, Any]) -> Path:
    """The root directory for PulumiCommand(root=…) (its bin/ can also go on PATH)."""
    root = tmp_path / "pulumi-root"
    (root / "bin").mkdir(parents=True, exist_ok=True)
    (root / "scenario.json").write_text(json.dumps(scenario))
    binary = root / "bin" / "pulumi"
    binary.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
                      "import fake_pulumi\nsys.exit(fake_pulumi.main(sys.argv[1:]))\n")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return root


def calls(root: Path) -> list[dict[str, Any]]:
    path = root / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _stream(address: str, events: list[dict[str, Any]]) -> None:
    import grpc
    from pulumi.runtime.proto import events_pb2, events_pb2_grpc

    with grpc.insecure_channel(address.removeprefix("tcp://")) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        stub = events_pb2_grpc.EventsStub(channel)
        stub.StreamEvents(iter([events_pb2.EventRequest(event=json.dumps(e)) for e in events]), timeout=30)


def _operation(args: list[str]) -> str | None:
    words = [a for a in args if not a.startswith("-")]
    if args[:1] == ["version"]:
        return "version"
    if words[:2] == ["stack", "select"]:
        return "select"
    if words[:2] == ["stack", "output"]:
        return "outputs"
    if words[:2] == ["stack", "history"]:
        return "history"
    if words[:1] == ["config"] and "--json" in args:
        return "config"
    if words[:1] == ["preview"]:
        return "help" if "--help" in args else "preview"
    if words[:1] == ["refresh"]:
        return "refresh"
    if words[:1] == ["up"]:
        return "up"
    return None


def main(argv: list[str]) -> int:
    root = Path(sys.argv[0]).resolve().parent.parent
    scenario = json.loads((root / "scenario.json").read_text())
    args = [a for a in argv if a != "--non-interactive"]
    with (root / "calls.jsonl").open("a") as log:
        log.write(json.dumps({"args": args, "cwd": os.getcwd(),
                              "env": {k: v for k, v in os.environ.items() if k.startswith("FLEET_")}}) + "\n")
    op = _operation(args)
    if op == "version":
        print(scenario.get("version", "v3.272.0"))
        return 0
    if op == "help":
        print("Usage: pulumi preview [flags]")
        return 0
    if op is None:
        print(f"fake pulumi: unexpected command {args}", file=sys.stderr)
        return 99
    answer = scenario.get(op, {})
    if isinstance(answer, list):  # one answer per call, in order (the last one repeats)
        done = sum(1 for c in calls(root) if _operation(c["args"]) == op) - 1
        answer = answer[min(done, len(answer) - 1)]
    if op == "outputs":
        print(json.dumps(answer.get("value", {})))
        return 0
    if op == "config":  # `pulumi config --show-secrets --json`: {key: {"value": ..., "secret": ...}}
        print(json.dumps({k: {"value": v, "secret": k == "gitlab:token"} for k, v in answer.get("value", {}).items()}))
        return 0
    if op == "history":
        print(json.dumps(answer.get("value", [{"version": 1, "kind": "update", "startTime": "2026-11-23T00:00:00.000Z",
                                                "message": "", "environment": {}, "config": {}, "result": "succeeded",
                                                "endTime": "2026-11-23T00:00:01.000Z", "resourceChanges": {}}])))
        return 0
    if "--event-log" in args and answer.get("events"):
        _stream(args[args.index("--event-log") + 1], answer["events"])
    sys.stdout.write(answer.get("stdout", ""))
    sys.stderr.write(answer.get("stderr", ""))
    return int(answer.get("exit", 0))
