"""The ``tidkit`` command: ``sync`` a list, ``scan`` files against it, ``report`` the matches.

Exit status (stable, for scripts):

- 0  success; for ``scan``, no file matched
- 1  ``scan`` only: at least one file matched
- 2  usage: a bad argument, or no server URL or API key given
- 3  verification failed: a snapshot's signature, SHA-256, signing key or entry count did not
     check out; nothing in the state directory was changed
- 4  the server refused a request (400, 401, 403, 404) or broke the list protocol
- 5  the server could not be reached, or kept failing or throttling after retries
- 6  a local problem: no synced state, another sync running, a state of another list or server,
     an unreadable results file

Files that cannot be hashed do not change ``scan``'s status: each is reported in the output (an
``error`` in JSON, an ERROR row in the table) and counted in the summary on stderr.
"""

import argparse
import base64
import hashlib
import json
import math
import os
import string
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from tidkit import __version__, formats
from tidkit.client import (
    ApiError,
    RateLimitedError,
    ServerError,
    ServerUnreachableError,
    TidClient,
)
from tidkit.errors import TidkitError
from tidkit.sync import (
    DEFAULT_LIST,
    PAGE_SIZE,
    FeedError,
    StateError,
    VerificationError,
    key_id_for,
    open_list,
    read_checkpoint,
    sync,
)

EXIT_OK, EXIT_MATCHED, EXIT_USAGE = 0, 1, 2
EXIT_VERIFICATION, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_LOCAL = 3, 4, 5, 6
REPORT_BATCH = 1_000
ACTIONS = ("pending_review", "removed", "restricted", "no_action", "not_relevant")
CONTENT_REF_FIELDS = ("path", "abspath", "name", "md5")


class UsageError(TidkitError):
    pass


class LocalInputError(TidkitError):
    pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as exc:
        parser.error(str(exc))  # exits with status 2
    except VerificationError as exc:
        return _fail(exc, EXIT_VERIFICATION)
    except (RateLimitedError, ServerError, ServerUnreachableError) as exc:
        return _fail(exc, EXIT_UNREACHABLE)
    except (ApiError, FeedError) as exc:
        return _fail(exc, EXIT_REFUSED)
    except (StateError, LocalInputError) as exc:
        return _fail(exc, EXIT_LOCAL)
    except KeyboardInterrupt:
        print("\nInterrupted; the state is as of the last checkpoint.", file=sys.stderr)
        return 130
    return EXIT_OK  # parser.error never returns


# -- sync ------------------------------------------------------------------------------------


def _sync(args: argparse.Namespace) -> int:
    client = _client(args, need_key=True)
    trusted = _trusted_keys(args.trust_key) if args.trust_key else None
    say = (lambda message: None) if args.quiet else (lambda m: print(m, file=sys.stderr))
    result = sync(
        client,
        args.state,
        args.list,
        page_size=args.page_size,
        bootstrap=args.bootstrap,
        trusted_keys=trusted,
        on_progress=say,
        memory=args.memory,
    )
    if args.json:
        print(json.dumps(result.__dict__))
        return EXIT_OK
    counts = result.counts
    kinds = ", ".join(f"{counts.get(t, 0)} {t}" for t in ("md5", "pdq", "phash", "vpdq"))
    was = "new" if result.seq_before is None else f"was {result.seq_before}"
    if result.snapshot_seq is not None:
        was += f"; snapshot {result.snapshot_seq} loaded"
    print(
        f"{result.list}: at seq {result.seq} ({was}); feed: {result.added} added, "
        f"{result.removed} removed; {counts.get('total', 0)} entries ({kinds})"
    )
    return EXIT_OK


def _trusted_keys(values: Sequence[str]) -> dict[str, bytes]:
    """``--trust-key BASE64`` values as {key id: raw key}; the id is derived, not trusted."""
    keys = {}
    for value in values:
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            raise UsageError(f"--trust-key {value!r} is not base64.") from None
        if len(raw) != 32:
            raise UsageError(f"--trust-key {value!r} is not a raw 32-byte Ed25519 public key.")
        keys[key_id_for(raw)] = raw
    return keys


# -- scan ------------------------------------------------------------------------------------


def _scan(args: argparse.Namespace) -> int:
    from tidkit.scan import ProgressBar, keep_freed_memory, scan

    if not 0 <= args.pdq_distance <= formats.PDQ_MATCH_DISTANCE:
        raise UsageError(f"--pdq-distance is 0 to {formats.PDQ_MATCH_DISTANCE}.")
    if not 0 <= args.phash_distance <= formats.PHASH_MATCH_DISTANCE:
        raise UsageError(f"--phash-distance is 0 to {formats.PHASH_MATCH_DISTANCE}.")
    local, checkpoint = open_list(args.state)
    keep_freed_memory()  # this process hashes the files itself with one worker or one file
    show_progress = args.progress if args.progress is not None else sys.stderr.isatty()
    progress = ProgressBar(sys.stderr) if show_progress else None
    files = matched = errors = 0
    results = scan(
        args.paths,
        local,
        workers=args.workers,
        mode="exact" if args.exact else "fast",
        on_progress=progress,
        pdq_distance=args.pdq_distance,
        phash_distance=args.phash_distance,
    )
    out = sys.stdout
    for result in results:
        files += 1
        matched += bool(result.matches)
        errors += result.error is not None
        if args.json:
            out.write(json.dumps(result.to_json(), separators=(",", ":")) + "\n")
        else:
            _table_row(out, result)
        out.flush()
    print(
        f"Scanned {files} files against {checkpoint.list}@{checkpoint.seq}: {matched} matched, "
        f"{errors} could not be read, {files - matched - errors} did not match.",
        file=sys.stderr,
    )
    return EXIT_MATCHED if matched else EXIT_OK


def _table_row(out: TextIO, result: Any) -> None:
    if result.error is not None:
        out.write(f"ERROR  {result.path}  {result.error['code']}: {result.error['message']}\n")
    elif result.matches:
        found = "  ".join(f"{m.hash_type}:{m.distance} {m.entry_id}" for m in result.matches)
        out.write(f"MATCH  {result.path}  {found}\n")
    else:
        out.write(f"-      {result.path}\n")


# -- report ----------------------------------------------------------------------------------


def _report(args: argparse.Namespace) -> int:
    for name in _template_fields(args.content_ref):
        if name not in CONTENT_REF_FIELDS:
            raise UsageError(
                f"--content-ref may use {', '.join('{' + f + '}' for f in CONTENT_REF_FIELDS)}; "
                f"not {{{name}}}."
            )
    action_at = args.action_at or datetime.now(UTC).isoformat(timespec="seconds")
    items, paths = [], []
    for line_number, result in _read_results(args.results):
        for match in result.get("matches") or ():
            try:
                items.append(_report_item(result, match, args, action_at))
            except (KeyError, TypeError, ValueError) as exc:
                raise LocalInputError(
                    f"{args.results}:{line_number} is not a tidkit scan result: {exc}"
                ) from None
            paths.append(result["path"])
    if args.dry_run:
        for item in items:
            print(json.dumps(item))
        return EXIT_OK
    if not items:
        print("No matches to report.", file=sys.stderr)
        return EXIT_OK
    client = _client(args, need_key=True)
    created = existing = updated = 0
    for start in range(0, len(items), REPORT_BATCH):
        batch = items[start : start + REPORT_BATCH]
        answer = client.post_matches(batch)
        created += answer["created"]
        existing += answer["existing"]
        for item, outcome, path in zip(batch, answer["results"], paths[start:], strict=False):
            if args.update_existing and not outcome["created"]:
                client.patch_match(outcome["id"], args.action, item.get("action_at"))
                updated += 1
            if args.json:
                print(json.dumps({"path": path, "entry_id": item["entry_id"], **outcome}))
    summary = f"Reported {len(items)} matches: {created} new, {existing} already reported"
    if args.update_existing:
        summary += f" ({updated} set to {args.action})"
    print(summary + ".", file=sys.stdout if not args.json else sys.stderr)
    return EXIT_OK


def _read_results(name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        stream = sys.stdin if name == "-" else open(name, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise LocalInputError(f"Cannot read {name}: {exc.strerror}.") from None
    with stream:
        for line_number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                result = json.loads(line)
            except ValueError:
                raise LocalInputError(f"{name}:{line_number} is not JSON.") from None
            if not isinstance(result, dict) or "path" not in result:
                raise LocalInputError(f"{name}:{line_number} is not a tidkit scan result.")
            yield line_number, result


def _report_item(
    result: dict[str, Any], match: dict[str, Any], args: argparse.Namespace, action_at: str
) -> dict[str, Any]:
    md5 = (result.get("hashes") or {})["md5"]
    path = result["path"]
    basis = md5 if args.ref_by == "md5" else os.path.abspath(path)
    entry_id = match["entry_id"]
    # Deterministic: the same file (or path) and entry give the same client_ref on every run,
    # so the server stores each match once however often the report is sent.
    digest = hashlib.sha256(f"{args.ref_by}:{basis}\n{entry_id}".encode()).hexdigest()
    fields = {"path": path, "abspath": os.path.abspath(path), "name": Path(path).name, "md5": md5}
    item = {
        "client_ref": f"tidkit-{digest[:40]}",
        "entry_id": entry_id,
        "distance": int(match["distance"]),
        "content_ref": args.content_ref.format_map(fields),
        "matched_at": result["scanned_at"],
        "action": args.action,
        "action_at": action_at,
    }
    if match["hash_type"] == formats.VPDQ:
        item["listed_match_percent"] = match["listed_match_percent"]
        item["query_match_percent"] = match["query_match_percent"]
    return item


def _template_fields(template: str) -> Iterator[str]:
    try:
        for _literal, name, _spec, _conversion in string.Formatter().parse(template):
            if name is not None:
                yield name
    except ValueError as exc:
        raise UsageError(f"--content-ref {template!r}: {exc}") from None


# -- shared ----------------------------------------------------------------------------------


def _client(args: argparse.Namespace, *, need_key: bool) -> TidClient:
    url = args.url or os.environ.get("TIDKIT_URL")
    if not url:
        checkpoint = read_checkpoint(args.state) if args.state else None
        url = checkpoint.server if checkpoint else None
    if not url:
        raise UsageError("Give the server with --url or TIDKIT_URL.")
    key = args.key or os.environ.get("TIDKIT_API_KEY")
    if need_key and not key:
        raise UsageError("Give an API key with TIDKIT_API_KEY (or --key).")
    try:
        return TidClient(url, key, timeout=args.timeout, retries=args.retries)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _default_state() -> str:
    if os.environ.get("TIDKIT_STATE"):
        return os.environ["TIDKIT_STATE"]
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return os.path.join(data_home, "tidkit")


def _memory_cap(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (number == 0 or 1 <= number < math.inf):
        raise argparse.ArgumentTypeError("must be 0 (no cap) or at least 1")
    return number


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return number


def _fail(error: Exception, status: int) -> int:
    print(f"tidkit: {error}", file=sys.stderr)
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tidkit",
        description="Sync a tidportal hash list, scan files against it, report the matches.",
        epilog="Exit status: 0 ok (scan: nothing matched), 1 scan found matches, 2 usage, "
        "3 snapshot verification failed, 4 refused by the server, 5 server unreachable, "
        "6 local state or input problem.",
    )
    parser.add_argument("--version", action="version", version=f"tidkit {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def common(sub: argparse.ArgumentParser, *, server: bool) -> None:
        sub.add_argument(
            "--state",
            default=_default_state(),
            help="state directory of the synced list (env TIDKIT_STATE; "
            "default $XDG_DATA_HOME/tidkit)",
        )
        if server:
            sub.add_argument("--url", help="the tidportal server (env TIDKIT_URL)")
            sub.add_argument(
                "--key",
                help="API key (prefer the env TIDKIT_API_KEY: arguments show in process lists)",
            )
            sub.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
            sub.add_argument(
                "--retries",
                type=int,
                default=5,
                help="tries again after a dropped connection, a 5xx or a 429 (default 5)",
            )

    sub = commands.add_parser("sync", help="bring the local copy of a list up to date")
    common(sub, server=True)
    sub.add_argument("--list", default=DEFAULT_LIST, help=f"list slug (default {DEFAULT_LIST})")
    sub.add_argument(
        "--bootstrap", action="store_true", help="reload the newest snapshot even if up to date"
    )
    sub.add_argument(
        "--trust-key",
        action="append",
        metavar="BASE64",
        help="accept only snapshots signed by this Ed25519 public key (repeatable); "
        "default: the keys at /api/v1/keys",
    )
    sub.add_argument(
        "--page-size",
        type=_positive,
        default=PAGE_SIZE,
        help=f"feed changes per request (at most {PAGE_SIZE})",
    )
    sub.add_argument(
        "--memory",
        type=_memory_cap,
        metavar="TIMES",
        help="keep the PDQ index under this many times the hashes' own bytes (2: ten million "
        "in 640 MB rather than 890, nearly as fast; removals cost more); later syncs and scans "
        "keep it; 0 removes the cap",
    )
    sub.add_argument("--json", action="store_true", help="print the result as JSON")
    sub.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    sub.set_defaults(run=_sync)

    sub = commands.add_parser("scan", help="hash files and match them against the synced list")
    common(sub, server=False)
    sub.add_argument("paths", nargs="+", metavar="PATH", help="files or directories (recursive)")
    sub.add_argument("--json", action="store_true", help="one JSON object per file (JSON Lines)")
    sub.add_argument(
        "--workers", type=_positive, default=None, help="processes (default: all cores)"
    )
    sub.add_argument(
        "--exact", action="store_true", help="hash at full resolution (slower; default fast)"
    )
    sub.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    sub.add_argument(
        "--pdq-distance",
        type=int,
        default=formats.PDQ_MATCH_DISTANCE,
        help=f"stricter PDQ threshold (default {formats.PDQ_MATCH_DISTANCE})",
    )
    sub.add_argument(
        "--phash-distance",
        type=int,
        default=formats.PHASH_MATCH_DISTANCE,
        help=f"stricter pHash threshold (default {formats.PHASH_MATCH_DISTANCE})",
    )
    sub.set_defaults(run=_scan)

    sub = commands.add_parser("report", help="post the matches of a scan (--json output)")
    common(sub, server=True)
    sub.add_argument("results", metavar="RESULTS.jsonl", help="output of scan --json ('-': stdin)")
    sub.add_argument("--action", required=True, choices=ACTIONS, help="what was done")
    sub.add_argument("--action-at", help="when (ISO 8601 with time zone; default now)")
    sub.add_argument(
        "--content-ref",
        default="{path}",
        help="your reference to each file, from {path}, {abspath}, {name}, {md5} (default {path})",
    )
    sub.add_argument(
        "--ref-by",
        choices=("md5", "path"),
        default="md5",
        help="what makes a match the same match on a re-run: the file's content (md5, the "
        "default) or its absolute path",
    )
    sub.add_argument(
        "--update-existing",
        action="store_true",
        help="set the action on matches reported before (an outcome reached later)",
    )
    sub.add_argument("--dry-run", action="store_true", help="print what would be posted")
    sub.add_argument("--json", action="store_true", help="one JSON line per report posted")
    sub.set_defaults(run=_report)
    return parser
