"""supervisord event listener: start again, after a pause, a program that supervisord gave up on (FATAL).

supervisord restarts a crashed program only `startretries` times in quick succession (about a minute in all), then
leaves it FATAL for good: a service that could not start while the disk was full, the GPU was busy or a model was
still missing would then stay down until someone opens a terminal, while the pod is paid by the hour. This listener
waits STUDIO_REVIVE_AFTER_S seconds (default 60) after a program turns FATAL, then starts it again (a fresh round of
retries). A program stopped by hand is STOPPED, not FATAL, and is left alone.

supervisord.conf runs it as [eventlistener:revive]; stdout is supervisord's protocol channel, so everything this
listener has to say goes to stderr (logs/revive.log).
"""

from __future__ import annotations

import os
import sys
import threading
import time

DEFAULT_REVIVE_AFTER_S = 60.0


def revive_after_s() -> float:
    raw = os.environ.get("STUDIO_REVIVE_AFTER_S", "").strip()
    try:
        return max(0.0, float(raw)) if raw else DEFAULT_REVIVE_AFTER_S
    except ValueError:
        say(f"STUDIO_REVIVE_AFTER_S={raw!r} is not a number of seconds; using {DEFAULT_REVIVE_AFTER_S:.0f}")
        return DEFAULT_REVIVE_AFTER_S


def say(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} revive: {message}", file=sys.stderr, flush=True)


def parse(line: str) -> dict[str, str]:
    """`key:value key:value ...` (a supervisor event header or a PROCESS_STATE payload's first line)."""
    return dict(token.split(":", 1) for token in line.split() if ":" in token)


def start_later(name: str, delay_s: float) -> None:
    """Start `group:name` after `delay_s` unless it is no longer FATAL by then (someone started or stopped it)."""
    def work():
        time.sleep(delay_s)
        try:
            from supervisor import childutils

            rpc = childutils.getRPCInterface(os.environ)
            if rpc.supervisor.getProcessInfo(name)["statename"] != "FATAL":
                return
            say(f"starting {name} again after {delay_s:.0f} s")
            rpc.supervisor.startProcess(name, False)
        except Exception as exc:  # the listener must outlive any one failed attempt; the next FATAL tries again
            say(f"could not start {name} again: {exc}")
    threading.Thread(target=work, daemon=True).start()


def main() -> int:
    delay_s = revive_after_s()
    while True:
        sys.stdout.write("READY\n")
        sys.stdout.flush()
        header_line = sys.stdin.readline()
        if not header_line:  # supervisord is gone
            return 0
        header = parse(header_line)
        payload = sys.stdin.read(int(header.get("len", "0")))
        if header.get("eventname") == "PROCESS_STATE_FATAL":
            fields = parse(payload.split("\n", 1)[0])
            group, process = fields.get("groupname", ""), fields.get("processname", "")
            name = f"{group}:{process}" if group and group != process else process
            if name:
                say(f"{name} kept crashing at start (FATAL); see its log. Trying again in {delay_s:.0f} s")
                start_later(name, delay_s)
        sys.stdout.write("RESULT 2\nOK")
        sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
