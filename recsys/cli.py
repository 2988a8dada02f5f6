"""``recsys``: every stage of the lifecycle as a subcommand, for people and DAG tasks alike.

Results go to stdout as JSON; logs go to stderr. Exit codes: 0 success, 1 unexpected error,
2 bad usage or configuration, 3 bad input data or failed validation, 4 something asked for does
not exist, 5 storage unreachable, 6 incompatible or tampered model artifact.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from recsys import __version__
from recsys.errors import ConfigError, NotFoundError, RecsysError
from recsys.names import check_cli_args

if TYPE_CHECKING:  # pipeline and storage load numpy/pandas: imported when a command runs
    from recsys.storage import Storage


def _date(text: str) -> str:
    from recsys.ids import as_utc

    try:
        as_utc(text)
    except (ValueError, TypeError):
        raise argparse.ArgumentTypeError(f"not an ISO date or datetime: {text!r}") from None
    return text


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def _add_date(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--date",
        type=_date,
        required=True,
        help="logical date (ISO date or datetime, UTC): what 'as of' means for this run",
    )


def _add_campaign_name(p: argparse.ArgumentParser) -> None:
    """``campaign status NAME`` or ``campaign status --campaign NAME``, as other commands."""
    p.add_argument("campaign", nargs="?", help="campaign name")
    p.add_argument("--campaign", dest="campaign_flag", metavar="CAMPAIGN", help="same as NAME")


def _campaign_name(args: argparse.Namespace) -> str:
    pos, flag = args.campaign, args.campaign_flag
    if pos and flag and pos != flag:
        raise ConfigError(f"two campaign names given: {pos!r} and --campaign {flag!r}")
    if not (pos or flag):
        raise ConfigError(f"campaign {args.campaign_command}: give the campaign NAME")
    return pos or flag


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys",
        description="Self-hosted Personalize-style recommendation lifecycle.",
        epilog="Storage root: --storage or RECSYS_STORAGE_URL (local dir or s3://bucket/prefix).",
    )
    parser.add_argument("--version", action="version", version=f"recsys {__version__}")
    parser.add_argument("--storage", help="storage root URL (default: $RECSYS_STORAGE_URL)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("import", help="import landing CSVs into a new snapshot")
    p.add_argument("--dataset-group", required=True)
    _add_date(p)
    p.add_argument("--mode", choices=["FULL", "INCREMENTAL"], default="FULL")
    p.add_argument(
        "--from",
        dest="source",
        metavar="LOCATION",
        help="land these CSVs first (a file, folder or prefix; local or s3://), dated so that "
        "this import sees them (Personalize's import job dataLocation)",
    )
    p.add_argument(
        "--type",
        dest="dataset_type",
        choices=["interactions", "items", "users"],
        help="the dataset type of the --from files (default: from each file's name)",
    )
    p.add_argument(
        "--land-only",
        action="store_true",
        help="only land the --from files (e.g. for the 2-hourly update to import)",
    )

    p = sub.add_parser("validate", help="validate a snapshot (minimum data, columns, types)")
    p.add_argument("--dataset-group", required=True)
    p.add_argument("--snapshot", required=True)
    p.add_argument(
        "--solution", help="apply this solution's event filters to the minimum-data check"
    )

    p = sub.add_parser("train", help="train a solution version on a snapshot")
    p.add_argument("--solution", required=True)
    p.add_argument("--snapshot", required=True)
    _add_date(p)
    p.add_argument("--training-mode", choices=["FULL", "UPDATE"], default="FULL")
    p.add_argument("--recipe", help="override the solution's recipe")
    p.add_argument(
        "--hyperparameters", type=_json_object, default=None, help="JSON, e.g. '{\"bptt\": 50}'"
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--campaign", help="hold out what users did since this campaign's live version trained"
    )

    p = sub.add_parser(
        "evaluate",
        help="score a version, the campaign's live version and popularity-count as served, "
        "on the version's holdout, with intervals",
    )
    p.add_argument("--campaign", required=True)
    p.add_argument("--version-id", required=True)

    p = sub.add_parser("deploy", help="point a campaign at a solution version")
    p.add_argument("--campaign", required=True)
    p.add_argument("--version-id", required=True)
    _add_date(p)
    p.add_argument("--force", action="store_true", help="deploy even over a newer live version")

    p = sub.add_parser("batch", help="batch recommendations for every user (Personalize JSONL)")
    p.add_argument("--campaign", required=True)
    _add_date(p)
    p.add_argument("--version-id", help="default: the campaign's live version")
    p.add_argument("--num-results", type=_num_results, help="1..500 (default: the campaign's, 25)")
    p.add_argument(
        "--input",
        help="Personalize batch-input JSON lines: a local file (uploaded under batch-inputs/) "
        "or a key under the storage root; default: every user of the snapshot. With an input "
        "(or another --filter/--num-results) it is a batch inference job under "
        "batch-jobs/<campaign>/ that never moves latest",
    )
    p.add_argument("--filter", help="filter expression (default: the campaign's filter)")
    p.add_argument(
        "--filter-values",
        type=_json_object,
        default=None,
        help='JSON, e.g. \'{"GENRE": "\\"Comedy\\""}\' (lines may carry their own)',
    )
    p.add_argument("--shards", type=int, default=1, help="split the users into N parts")

    for kind, text in (
        ("related-items", "related items per input itemId (similar-items / sims solutions)"),
        ("segments", "batch segment job: the users most likely to like each input itemId"),
    ):
        p = sub.add_parser(kind, help=text)
        p.add_argument("--campaign", required=True)
        _add_date(p)
        p.add_argument("--version-id", help="default: the campaign's live version")
        p.add_argument("--num-results", type=int, help="items (users for segments) per line")
        p.add_argument(
            "--input",
            help='{"itemId": ...} JSON lines: a local file (uploaded under batch-inputs/) or a '
            "key under the storage root; default: every item of the model",
        )

    p = sub.add_parser("hpo", help="hyperparameter optimisation of a perform_hpo solution")
    p.add_argument("--solution", required=True)
    p.add_argument("--snapshot", required=True)
    _add_date(p)
    p.add_argument(
        "--step",
        choices=["run", "plan", "trials", "finalize"],
        default="run",
        help="run = plan + trials here + finalize; start more 'trials' workers at once to run "
        "in parallel (study database: $RECSYS_HPO_DATABASE_URL, else SQLite in local storage)",
    )
    p.add_argument("--worker", type=int, default=0, help="this worker's number (trials)")

    p = sub.add_parser("run", help="the whole nightly pipeline in this process (no Airflow)")
    p.add_argument("--campaign", required=True)
    _add_date(p)
    p.add_argument("--mode", choices=["FULL", "INCREMENTAL"], default="FULL")
    p.add_argument(
        "--deploy",
        choices=["auto", "force", "block"],
        default="auto",
        help="the promotion gate: auto decides on metrics; force; block",
    )

    p = sub.add_parser("replay", help="write a data set's history as daily landing drops")
    p.add_argument("--source", choices=["movielens", "synthetic"], default="movielens")
    p.add_argument(
        "--data-dir", help="MovieLens directory (ml-latest-small, ml-25m, ml-1m, ml-100k)"
    )
    p.add_argument("--dataset-group", required=True)
    p.add_argument("--until", required=True, help="last day (inclusive, UTC) to land")
    p.add_argument("--days", type=int, default=30, help="daily drops for this many days")
    p.add_argument("--seed", type=int, default=0, help="synthetic source only")

    p = sub.add_parser("convert", help="convert MovieLens files to Personalize CSVs")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--out", required=True)

    p = sub.add_parser("report", help="where a campaign's outputs are, metrics, sample users")
    p.add_argument("--campaign", required=True)
    p.add_argument("--users", type=int, default=3)

    p = sub.add_parser("campaign", help="campaign status, deploy history, rollback")
    csub = p.add_subparsers(dest="campaign_command", required=True)
    for name, text in (("status", "what is live"), ("history", "every deployment")):
        cp = csub.add_parser(name, help=text)
        _add_campaign_name(cp)
    cp = csub.add_parser("rollback", help="put an earlier deployment back live")
    _add_campaign_name(cp)
    cp.add_argument("--to", dest="to_version", help="version id (default: the previous one)")

    p = sub.add_parser("dataset-group", help="create a dataset group from Personalize schemas")
    gsub = p.add_subparsers(dest="group_command", required=True)
    gp = gsub.add_parser("create", help="write configs/dataset_groups/NAME.yaml")
    gp.add_argument("--name", required=True)
    for dtype in ("interactions", "items", "users"):
        gp.add_argument(f"--{dtype}-schema", metavar="FILE", help="Personalize schema JSON")
    gp.add_argument("--event-types", help="comma-separated event types (default: any)")
    gp.add_argument("--force", action="store_true", help="replace an existing dataset group")

    p = sub.add_parser("gc", help="delete old outputs nothing points at (dry run by default)")
    p.add_argument("--keep-days", type=float, default=30.0, help="keep what is newer (30)")
    p.add_argument("--keep-versions", type=int, default=3, help="newest N of each kind (3)")
    p.add_argument(
        "--grace-hours", type=float, default=24.0, help="incomplete and newer = running (24)"
    )
    p.add_argument("--apply", action="store_true", help="delete (default: report only)")

    p = sub.add_parser("filter", help="check a filter expression (Personalize syntax)")
    fsub = p.add_subparsers(dest="filter_command", required=True)
    fp = fsub.add_parser("check", help="parse an expression; exit 2 with the error position")
    fp.add_argument("expression")
    fp.add_argument(
        "--dataset-group",
        help="also check the Items fields against this group's items schema, as batch does",
    )
    return parser


def _num_results(text: str) -> int:
    n = int(text)
    if not 1 <= n <= 500:
        raise argparse.ArgumentTypeError(f"must be 1..500, got {n}")
    return n


def run(args: argparse.Namespace) -> Any:
    check_cli_args(args)  # names become keys and paths: refuse '../x' before any I/O
    from recsys import pipeline
    from recsys.storage import Storage

    storage = Storage(args.storage) if args.storage else Storage()
    cmd = args.command
    if cmd == "import":
        from recsys.data.landing import import_from

        return import_from(
            storage,
            args.dataset_group,
            args.date,
            args.mode,
            args.source,
            args.dataset_type,
            land_only=args.land_only,
        )
    if cmd == "validate":
        return pipeline.validate(args.dataset_group, args.snapshot, args.solution, storage)
    if cmd == "train":
        overrides = {"recipe": args.recipe, "hyperparameters": args.hyperparameters}
        return pipeline.train(
            args.solution,
            args.snapshot,
            args.date,
            args.training_mode,
            overrides,
            args.seed,
            storage,
            campaign=args.campaign,
        )
    if cmd == "evaluate":
        return pipeline.evaluate(args.campaign, args.version_id, storage)
    if cmd == "deploy":
        return pipeline.deploy_campaign(
            args.campaign,
            args.version_id,
            args.date,
            force=args.force,
            reason="manual",
            storage=storage,
        )
    if cmd == "batch":
        return pipeline.batch(
            args.campaign,
            args.date,
            args.version_id,
            args.num_results,
            storage,
            shards=args.shards,
            input_key=_input_key(storage, args.input),
            filter_expression=args.filter,
            filter_values=args.filter_values,
        )
    if cmd in ("related-items", "segments"):
        from recsys.inference.item_jobs import item_job

        return item_job(
            storage,
            cmd,
            args.campaign,
            args.date,
            version_id=args.version_id,
            num_results=args.num_results,
            input_key=_input_key(storage, args.input),
        )
    if cmd == "hpo":
        from recsys import hpo

        date = pipeline._iso(args.date)
        where = (storage, args.solution, args.snapshot, date)
        if args.step == "plan":
            return hpo.plan_hpo(*where)
        if args.step == "trials":
            return hpo.run_trials(*where, worker=args.worker)
        if args.step == "finalize":
            return hpo.finalize_hpo(*where)["hpo"] | {"step": "finalize"}
        return hpo.run_hpo(*where)
    if cmd == "run":
        return pipeline.run_nightly(args.campaign, args.date, args.mode, storage, args.deploy)
    if cmd == "gc":
        from recsys.retention import KeepRules, gc

        rules = KeepRules(args.keep_days, args.keep_versions, args.grace_hours)
        return gc(storage, rules, apply=args.apply)
    if cmd == "dataset-group":
        from recsys.personalize_schema import create_dataset_group

        files = {t: getattr(args, f"{t}_schema") for t in ("interactions", "items", "users")}
        events = [e.strip() for e in (args.event_types or "").split(",") if e.strip()]
        return create_dataset_group(args.name, files, events, force=args.force)
    if cmd == "filter":
        from recsys.filters import Filter

        f = Filter.parse(args.expression)
        if args.dataset_group:
            from recsys.filters import schema_item_columns
            from recsys.schema import DatasetGroup

            f.check_fields(schema_item_columns(DatasetGroup.load(args.dataset_group)))
        return {
            "expression": f.expression,
            "expressions": [
                {"action": e.action, "dataset": e.dataset, "params": sorted(e.params)}
                for e in f.expressions
            ],
        }
    if cmd == "replay":
        from recsys.data.sources.replay import replay

        if args.source == "movielens":
            if not args.data_dir:
                raise RecsysError("replay --source movielens needs --data-dir")
            from recsys.data.sources.movielens import load_movielens

            data = load_movielens(args.data_dir)
        else:
            from recsys.data.sources.synthetic import generate

            data = generate(seed=args.seed)
        return replay(storage, data, args.dataset_group, args.until, args.days)
    if cmd == "convert":
        from recsys.data.sources.movielens import convert_movielens

        return {k: str(v) for k, v in convert_movielens(args.data_dir, args.out).items()}
    if cmd == "report":
        from recsys.report import campaign_report

        print(campaign_report(storage, args.campaign, args.users))
        return None
    if cmd == "campaign":
        campaign = _campaign_name(args)
        if args.campaign_command == "status":
            return pipeline.status(campaign, storage)
        if args.campaign_command == "rollback":
            return pipeline.rollback_campaign(campaign, args.to_version, storage)
        return pipeline.history(campaign, storage)
    raise AssertionError(cmd)


def _input_key(storage: Storage, path: str | None) -> str | None:
    """A local input file is uploaded (content-addressed) so shards and reruns can read it."""
    if path is None:
        return None
    if os.path.isfile(path):
        with open(path, "rb") as f:
            body = f.read()
        key = f"batch-inputs/{hashlib.sha256(body).hexdigest()[:16]}.jsonl"
        if not storage.exists(key):
            storage.write_bytes(key, body)
        return key
    if not storage.exists(path):
        raise NotFoundError(f"batch input {path!r}: no such local file nor {storage.uri(path)}")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
    except RecsysError as exc:
        print(f"recsys: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug or an unforeseen failure: one line, exit 1
        print(f"recsys: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        if os.environ.get("RECSYS_DEBUG"):
            raise
        return 1
    if result is not None:
        from recsys.storage import json_dumps

        sys.stdout.write(json_dumps(result))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
