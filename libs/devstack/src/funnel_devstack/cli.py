"""The `funnel` command: `up` (foreground or --detach), `down`, `status`, `demo`, `keys`,
`dlq redrive`, `report rebuild`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from funnel_devstack.demo import run_demo, run_history
from funnel_devstack.mailbox import SPOOL_FILE, read_raw_messages
from funnel_devstack.processes import is_alive, read_state, terminate
from funnel_devstack.stack import SERVICES, Stack, StackPorts

DEFAULT_ROOT = Path(".funnel")
STOP_ORDER = [*SERVICES, "mailbox", "kafka", "postgres"]


def _stack_info(stack: Stack) -> dict[str, object]:
    return {
        "urls": {name: stack.url(name) for name in SERVICES},
        "kafka": stack.kafka_bootstrap,
        "postgres": f"127.0.0.1:{stack.ports.postgres}/{stack.postgres.database}",
        "smtp": f"127.0.0.1:{stack.ports.smtp}",
        "mail_dir": str(stack.mail_dir),
        "logs": str(stack.logs),
    }


def _print_where_to_look(stack: Stack) -> None:
    print("\nFunnel is up.")
    for name in SERVICES:
        print(f"  {name:<14} {stack.url(name)}   (API docs: {stack.url(name)}/docs)")
    print(f"  kafka          {stack.kafka_bootstrap}")
    print(f"  postgres       127.0.0.1:{stack.ports.postgres} (database funnel)")
    print(f"  mail           every email sent lands in {stack.mail_dir / SPOOL_FILE} (an mbox)")
    print(f"  logs           {stack.logs}")
    print(f"  dashboard      {stack.url('reporting')}/dashboard#key={stack.admin_api_key}")
    ana = stack.team_keys["ana"]
    print(
        f"  leads          {stack.url('reporting')}/dashboard/leads"
        f"?funnel_id=digital-sales&stage=desire#key={ana}"
    )
    print("                 (as ana, a sales rep: click a lead, log a call, move it, take it)")
    print(f"\n  admin API key  {stack.admin_api_key}")
    for name, key in stack.team_keys.items():
        print(f"  {name + ' key':<14} {key}   (a named key: what {name} does carries the name)")
    print("\nTry it:")
    print(f"  curl -s -X POST {stack.url('lead-intake')}/v1/forms/demo/submissions \\")
    print("       -H 'content-type: application/json' -d '{\"email\": \"you@example.com\"}'")
    print(f"  curl -s -H 'Authorization: Bearer {stack.admin_api_key}' \\")
    print(f"       {stack.url('reporting')}/v1/funnels/digital-sales/snapshot")


async def _up(stack: Stack, demo: int, history_days: int = 0) -> None:
    await stack.up()
    (stack.root / "stack.json").write_text(json.dumps(_stack_info(stack), indent=2) + "\n")
    _print_where_to_look(stack)
    if history_days:
        print(f"\nImporting {history_days} days of history (leads and what they did since)...")
        history = await run_history(
            stack.url("lead-intake"), stack.url("reporting"), stack.admin_api_key, history_days
        )
        print(
            f"  {history.people} people captured over {history.days} days and"
            f" {history.activities} activities at their own times, in the numbers"
            f" after {history.seconds:.0f}s"
        )
    if demo:
        print(f"\nPosting a demo of {demo} form submissions...")
        result = await run_demo(
            stack.url("lead-intake"), stack.url("reporting"), stack.admin_api_key, demo
        )
        print(
            f"  posted {result.posted}, accepted {result.accepted}, "
            f"{result.unique_people} distinct people"
        )
        print(f"  every lead visible in the snapshot after {result.seconds_to_visible:.1f}s")
        print(f"  then {result.activities} activities (page views, pricing, purchases); now:")
        for stage in result.snapshot.get("stages", []):
            print(f"    {stage['stage']:<12} {stage['leads']:>5}")
        mails = await _settled_mail_count(stack.mail_dir, result.unique_people)
        print(f"  {mails} emails in {stack.mail_dir / SPOOL_FILE}: the welcomes (marketing touches")
        print("  wait for consent, which the demo form does not ask for)")
        print(
            f"\nLook at the dashboard: {stack.url('reporting')}/dashboard#key={stack.admin_api_key}"
        )


async def _settled_mail_count(mail_dir: Path, at_least: int, timeout: float = 30) -> int:
    """Wait (bounded) for the welcome emails to land, so the count printed is the real one."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout

    def count() -> int:
        return len(read_raw_messages(mail_dir)[0])

    found = await asyncio.to_thread(count)
    while found < at_least and loop.time() < deadline:
        await asyncio.sleep(0.5)
        found = await asyncio.to_thread(count)
    return found


def cmd_up(args: argparse.Namespace) -> int:
    root: Path = args.root
    if read_state(root / "state.json"):
        live = [n for n, i in read_state(root / "state.json").items() if is_alive(i["pid"])]
        if live:
            print(
                f"a stack is already running from {root} ({', '.join(live)}); "
                "run `funnel down` first",
                file=sys.stderr,
            )
            return 1
    ports = StackPorts.free() if args.free_ports else StackPorts()
    stack = Stack(root, ports, partitions=args.partitions)
    try:
        asyncio.run(_up(stack, args.demo, args.history_days))
    except BaseException:
        stack.down()
        raise
    if args.detach:
        print("\nRunning in the background; stop it with `funnel down`.")
        return 0
    print("\nPress Ctrl-C to stop everything.")
    stopping = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stopping:
            signal.pause()
    finally:
        print("\nStopping...")
        stack.down()
        print("Stopped.")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    state = read_state(args.root / "state.json")
    for name in STOP_ORDER:
        info = state.get(name)
        if not info or not is_alive(info["pid"], info.get("create_time")):
            continue
        sig = signal.SIGINT if info.get("signal") == "SIGINT" else signal.SIGTERM
        terminate(info["pid"], timeout=30, sig=sig)
        print(f"stopped {name}")
    (args.root / "state.json").unlink(missing_ok=True)
    if args.purge:
        shutil.rmtree(args.root, ignore_errors=True)
        print(f"removed {args.root}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state = read_state(args.root / "state.json")
    if not state:
        print("not running")
        return 1
    for name, info in state.items():
        alive = is_alive(info["pid"], info.get("create_time"))
        print(f"{name:<14} pid {info['pid']:<8} {'running' if alive else 'gone'}")
    with contextlib.suppress(FileNotFoundError):
        print((args.root / "stack.json").read_text())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    info = json.loads((args.root / "stack.json").read_text())
    key = (args.root / "admin-api-key").read_text().strip()
    result = asyncio.run(
        run_demo(info["urls"]["lead-intake"], info["urls"]["reporting"], key, args.leads)
    )
    print(json.dumps(result.__dict__, indent=2, default=str))
    return 0


def cmd_keys_new(args: argparse.Namespace) -> int:
    from funnel_servicekit.auth import new_api_key

    key, entry = new_api_key(args.name, args.scope)
    print(f"key (shown once, give it to the caller): {key}")
    print(f"entry for FUNNEL_API_KEYS (a JSON list): {json.dumps(entry)}")
    return 0


def cmd_dlq_redrive(args: argparse.Namespace) -> int:
    from funnel_servicekit.redrive import redrive

    bootstrap = (
        args.bootstrap_servers or json.loads((args.root / "stack.json").read_text())["kafka"]
    )
    result = asyncio.run(
        redrive(bootstrap, args.topic, only_group=args.group, dry_run=args.dry_run)
    )
    print(json.dumps(result.__dict__))
    return 0


def _local_stack(root: Path) -> Stack:
    """The stack `funnel up` started from `root`, rebuilt from the stack.json it wrote."""
    info = json.loads((root / "stack.json").read_text())
    ports = StackPorts(
        kafka=int(info["kafka"].rsplit(":", 1)[1]),
        postgres=int(info["postgres"].split(":", 1)[1].split("/", 1)[0]),
        smtp=int(info["smtp"].rsplit(":", 1)[1]),
        services={name: int(url.rsplit(":", 1)[1]) for name, url in info["urls"].items()},
    )
    return Stack(root, ports)


def cmd_report_rebuild(args: argparse.Namespace) -> int:
    """`python -m reporting rebuild` against the local stack (or FUNNEL_DATABASE_URL and
    FUNNEL_KAFKA_BOOTSTRAP_SERVERS when both are set). A swap needs the live consumer stopped:
    a running local reporting is stopped for it and started again afterwards."""
    command = [sys.executable, "-m", "reporting", "rebuild", "--timeout", str(args.timeout)]
    command += [*(["--schema", args.schema] if args.schema else []), *(["--swap"] * args.swap)]
    if os.environ.get("FUNNEL_DATABASE_URL") and os.environ.get("FUNNEL_KAFKA_BOOTSTRAP_SERVERS"):
        return subprocess.run(command, check=False).returncode
    stack = _local_stack(args.root)
    running = read_state(stack.state_file).get("reporting") or {}
    stopped = bool(args.swap and running and is_alive(running["pid"], running.get("create_time")))
    if stopped:
        sig = signal.SIGINT if running.get("signal") == "SIGINT" else signal.SIGTERM
        terminate(running["pid"], timeout=30, sig=sig)
        print("stopped reporting for the swap")
    env = {**os.environ, **stack.command_env("reporting")}
    code = subprocess.run(command, env=env, check=False).returncode
    if stopped:
        stack.start_service("reporting")
        asyncio.run(stack.wait_service_ready("reporting"))
        print(f"reporting is serving again at {stack.url('reporting')}")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="funnel", description="Run Funnel locally.")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="data folder (.funnel)")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start Kafka, PostgreSQL, the mailbox and the services")
    up.add_argument("--detach", action="store_true", help="return once everything is ready")
    up.add_argument("--partitions", type=int, default=6, help="partitions per topic")
    up.add_argument("--demo", type=int, default=0, metavar="N", help="post N demo form posts")
    up.add_argument("--free-ports", action="store_true", help="use free ports, not 8001-8004")
    up.add_argument(
        "--history-days",
        type=int,
        default=0,
        metavar="D",
        help="first import D days of demo history through the public APIs",
    )
    down = sub.add_parser("down", help="stop a stack started with --detach")
    down.add_argument("--purge", action="store_true", help="also delete the data folder")
    sub.add_parser("status", help="what runs")
    demo = sub.add_parser("demo", help="post demo traffic to a running stack")
    demo.add_argument("--leads", type=int, default=300)
    keys = sub.add_parser("keys", help="internal API keys").add_subparsers(
        dest="keys_command", required=True
    )
    new_key = keys.add_parser("new", help="make a key; prints the key and its hashed entry")
    new_key.add_argument("--name", required=True)
    new_key.add_argument("--scope", action="append", required=True, help="repeatable")
    dlq = sub.add_parser("dlq", help="dead-letter topics").add_subparsers(
        dest="dlq_command", required=True
    )
    redrive = dlq.add_parser("redrive", help="republish dead letters to their topic, once each")
    redrive.add_argument("--topic", required=True, help="the main topic, e.g. funnel.lead-events")
    redrive.add_argument("--group", help="only the dead letters of this consumer group")
    redrive.add_argument("--dry-run", action="store_true")
    redrive.add_argument("--bootstrap-servers", help="default: the local stack's broker")
    report = sub.add_parser("report", help="reporting operations").add_subparsers(
        dest="report_command", required=True
    )
    rebuild = report.add_parser("rebuild", help="replay every topic into fresh reporting tables")
    rebuild.add_argument("--schema", help="target schema (default: reporting_rebuild)")
    rebuild.add_argument("--swap", action="store_true", help="then make it the live schema")
    rebuild.add_argument("--timeout", type=float, default=3600.0, help="give up after seconds")
    args = parser.parse_args(argv)
    if args.command == "report":
        return cmd_report_rebuild(args)
    if args.command == "dlq":
        return cmd_dlq_redrive(args)
    if args.command == "keys":
        return cmd_keys_new(args)
    handlers = {"up": cmd_up, "down": cmd_down, "status": cmd_status, "demo": cmd_demo}
    return handlers[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
