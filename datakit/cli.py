"""The `datakit` command line: parses arguments and calls the library; user mistakes exit 2 without a traceback."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from datakit import __version__
from datakit.errors import DatakitError, UsageError
from datakit.testing.families import FAMILIES


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments as a UsageError (exit 2) instead of exiting on its own."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="datakit", description="Build, check and publish alignment datasets for LLMs.")
    parser.add_argument("--version", action="version", version=f"datakit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    validate = commands.add_parser(
        "validate",
        help="check data files against a record schema",
        description="Check Parquet, JSON Lines (.gz/.zst), JSON, Arrow files, datasets folders or Hub datasets "
        "against a record schema. Exit 0: valid; 1: invalid data; 2: unusable input or arguments.",
    )
    validate.add_argument("paths", nargs="+", metavar="PATH", help="files, directories, or hf://datasets/org/name[@rev]")
    validate.add_argument("--schema", metavar="NAME|FILE",
                          help="record kind (see 'datakit schemas') or a .schema.json file; detected per file when left out")
    validate.add_argument("--style", metavar="STYLE", help="force a style of the schema, e.g. conversational or standard")
    validate.add_argument("--max-errors", type=_non_negative, default=20, metavar="N",
                          help="show at most N errors in all (default 20); the totals always count every error")
    validate.add_argument("--format", choices=("text", "json", "github"), default="text",
                          help="text (default), json, or github (workflow annotations for GitHub Actions)")
    validate.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                          help="show a progress bar on stderr (default: when stderr is a terminal)")
    validate.add_argument("--batch-size", type=_positive, default=65_536, metavar="ROWS", help=argparse.SUPPRESS)

    run = commands.add_parser(
        "run", help="run a pipeline recipe",
        description="Run a YAML recipe. Finished steps are reused when their fingerprint is unchanged; a killed run "
        "continues with --resume. Exit 0: finished; 1: a step broke or output was invalid; 2: bad recipe or input.")
    run.add_argument("recipe", metavar="RECIPE", help="the recipe's YAML file")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a recipe value, e.g. seed=3 or steps.keep.with.where='score > 0.5' (repeatable)")
    run.add_argument("--profile", metavar="NAME",
                     help="apply the recipe's named set of overrides (its 'profiles' section) before --set")
    run.add_argument("--resume", action="store_true", help="continue an interrupted run in the same run directory")
    run.add_argument("--overwrite", action="store_true", help="delete what the run directory holds and start over")
    run.add_argument("--retry-failed", action="store_true",
                     help="first run the rows that stored steps failed again, then bring the outputs up to date")
    run.add_argument("--executor", choices=("local", "ray"), default="local",
                     help="local (default: threads in this process) or ray (Ray Data on a cluster or a local instance)")
    run.add_argument("--address", metavar="ADDR", help="Ray cluster address (default: start a local instance)")
    run.add_argument("--workers", type=_positive, metavar="N", help="threads for the local executor (default: cores)")
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress bars on stderr (default: when stderr is a terminal)")
    run.add_argument("--json", action="store_true", help="print the run summary as JSON")

    steps = commands.add_parser("steps", help="list the pipeline steps, or describe one",
                                description="List the steps recipes can use, or show one step's parameters.")
    steps.add_argument("name", nargs="?", help="step to describe")

    schemas = commands.add_parser("schemas", help="list the record schemas, or print one",
                                  description="List the record kinds datakit knows, or print one's JSON Schema.")
    schemas.add_argument("name", nargs="?", help="schema to print")
    schemas.add_argument("--arrow", action="store_true", help="print the Arrow schema derived for each style instead")

    verify = commands.add_parser(
        "verify", help="score a dataset's responses against the constraints its rows carry",
        description="Check every response against its row's constraints (a 'constraints' column of {id, kwargs}, "
        "or IFEval's instruction_id_list + kwargs) and print pass rates per constraint id, in strict and loose "
        "mode. Exit 0: scored (1 with --fail-under when the mean CSR is lower); 2: unusable input or arguments.")
    verify.add_argument("paths", nargs="+", metavar="DATASET", help="files, folders or hf://datasets/org/name[@rev]")
    verify.add_argument("--mode", choices=("strict", "loose", "both"), default="both",
                        help="strict, loose (IFEval's lenient variants) or both (default)")
    verify.add_argument("--constraints", default="constraints", metavar="COLUMN",
                        help="column holding the constraints (default constraints)")
    verify.add_argument("--responses", metavar="COLUMN",
                        help="response column (default: completions, messages, completion or response)")
    verify.add_argument("--source", default="source", metavar="COLUMN",
                        help="input text for grounding and copy constraints (default source)")
    verify.add_argument("--fail-under", type=float, metavar="CSR",
                        help="exit 1 when the mean CSR (first mode shown) is below this, e.g. for CI")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")

    verifiers = commands.add_parser("verifiers", help="list the constraint verifiers, or describe one",
                                    description="List the constraint ids rows may carry, with their arguments.")
    verifiers.add_argument("name", nargs="?", help="constraint id to describe")

    tiny = commands.add_parser(
        "tiny-model", help="build a tiny random-weight model for offline tests",
        description="Write a tiny chat model (or reward model) with random weights and a real chat format, which "
        "loads in transformers and vLLM; prints its folder. A folder holding the same build is reused.")
    tiny.add_argument("out", metavar="OUT", help="folder to write the model to")
    tiny.add_argument("--family", default="llama3", help=f"chat format: {', '.join(FAMILIES)} (default llama3)")
    tiny.add_argument("--reward", action="store_true", help="build a reward model (one-label sequence classifier)")
    tiny.add_argument("--seed", type=_non_negative, default=0, metavar="N", help="weight seed (default 0)")
    tiny.add_argument("--overwrite", action="store_true", help="rebuild even if OUT already holds this model")

    classifier = commands.add_parser("classifier", help="train fastText text classifiers (e.g. for quality_filter)",
                                     description="Train fastText text classifiers, such as the quality classifiers "
                                     "the quality_filter step applies.")
    classifier_actions = classifier.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    train = classifier_actions.add_parser(
        "train", help="train a classifier on labeled rows",
        description="Train a fastText classifier on a dataset's text and label columns, hold out a seeded "
        "validation split and print its accuracy, precision and recall. Writes MODEL and MODEL.json (labels, "
        "settings, counts, metrics) atomically. Exit 0: trained; 2: unusable input or arguments (nothing written).")
    train.add_argument("data", metavar="DATA", help="Parquet or JSON Lines file or folder with labeled rows")
    train.add_argument("--output", "-o", required=True, metavar="MODEL", help="model file to write, e.g. quality.bin")
    train.add_argument("--text-column", default="text", metavar="COLUMN",
                       help="text to classify: a text column, or chat messages (default text)")
    train.add_argument("--role", default="assistant", metavar="ROLE",
                       help="with chat messages: the turns of this role are the text ('all' for every turn; "
                            "default assistant)")
    train.add_argument("--label-column", default="label", metavar="COLUMN",
                       help="labels: text, true/false, or numbers with --threshold (default label)")
    train.add_argument("--threshold", type=float, metavar="T",
                       help="numeric labels (e.g. reward or judge scores): at least T is good, below is bad")
    train.add_argument("--positive", metavar="LABEL", help="the positive label (default good)")
    train.add_argument("--valid-fraction", type=float, default=0.1, metavar="F",
                       help="share of rows held out for validation (default 0.1)")
    train.add_argument("--seed", type=_non_negative, default=0, metavar="N", help="split and training seed (default 0)")
    train.add_argument("--epochs", type=_positive, default=5, metavar="N", help="training epochs (default 5)")
    train.add_argument("--lr", type=float, default=0.1, help="learning rate (default 0.1)")
    train.add_argument("--dim", type=_positive, default=100, metavar="N", help="vector size (default 100)")
    train.add_argument("--word-ngrams", type=_positive, default=2, metavar="N",
                       help="longest word n-gram used as a feature (default 2)")
    train.add_argument("--bucket", type=_positive, default=200_000, metavar="N",
                       help="hash buckets for n-gram features (default 200000)")
    train.add_argument("--threads", type=_positive, default=11, metavar="N",
                       help="training threads (default 11, also the least: fastText's initialization needs them)")
    train.add_argument("--json", action="store_true", help="print the training report as JSON")
    _add_hub_commands(commands)
    _add_train_command(commands)
    return parser


_REGISTRY_HELP = ("'hub' for the Hugging Face Hub, or a local registry folder (default: $DATAKIT_REGISTRY, "
                  "else ~/.cache/datakit/registry)")


def _add_hub_commands(commands: argparse._SubParsersAction) -> None:
    publish = commands.add_parser(
        "publish", help="publish a run's output or a folder of rows as an immutable dataset version",
        description="Validate the rows, re-cut them into Parquet shards and publish them with a manifest "
        "(datakit.json) and a dataset card (README.md) as one version, tagged vX.Y.Z. An existing version is "
        "refused. Exit 0: published; 1: the registry failed (nothing published); 2: bad input, invalid rows, "
        "existing version or arguments.")
    publish.add_argument("source", metavar="RUN_DIR_OR_PATH", help="a run directory, or a Parquet/JSON Lines "
                         "file or folder")
    publish.add_argument("--repo", required=True, metavar="ORG/NAME", help="repository to publish to")
    publish.add_argument("--version", required=True, metavar="X.Y.Z", help="the new version, e.g. 1.0.0")
    publish.add_argument("--registry", metavar="hub|PATH", help=_REGISTRY_HELP)
    publish.add_argument("--private", action="store_true", help="create the repository as private (Hub)")
    publish.add_argument("--message", metavar="TEXT", help="commit message")
    publish.add_argument("--skip-existing", action="store_true",
                         help="succeed without publishing when the version already holds exactly these rows "
                              "(other rows under that version are still refused)")
    _add_source_options(publish)

    pull = commands.add_parser(
        "pull", help="download a dataset version and check it against its manifest",
        description="Download exactly one version, check every file's sha256, the row count, the content "
        "fingerprint, the columns and the record schema, and print the local folder. Exit 0: pulled and "
        "verified; 1: the data does not match its manifest or the registry failed; 2: unknown version or bad "
        "arguments.")
    pull.add_argument("ref", metavar="ORG/NAME@X.Y.Z", help="the version to pull")
    pull.add_argument("--to", metavar="DIR", help="folder to download into (default: "
                      "~/.cache/datakit/datasets/ORG/NAME/X.Y.Z)")
    pull.add_argument("--registry", metavar="hub|PATH", help=_REGISTRY_HELP)

    versions = commands.add_parser("versions", help="list a dataset's published versions",
                                   description="List the published versions of a repository, oldest first.")
    versions.add_argument("repo", metavar="ORG/NAME", help="the repository")
    versions.add_argument("--registry", metavar="hub|PATH", help=_REGISTRY_HELP)
    versions.add_argument("--json", action="store_true", help="print the versions as JSON")

    diff = commands.add_parser(
        "diff", help="compare two dataset versions",
        description="Compare two versions: columns added, removed or retyped, row counts, and rows added or "
        "removed by their 'id'. Both versions are pulled and verified first.")
    diff.add_argument("a", metavar="ORG/NAME@A", help="the older version")
    diff.add_argument("b", metavar="ORG/NAME@B", help="the newer version")
    diff.add_argument("--registry", metavar="hub|PATH", help=_REGISTRY_HELP)
    diff.add_argument("--examples", type=_non_negative, default=5, metavar="N",
                      help="ids shown for rows added and removed (default 5)")
    diff.add_argument("--json", action="store_true", help="print the differences as JSON")

    card = commands.add_parser(
        "card", help="stage a dataset and render its card locally, without publishing",
        description="Stage what 'datakit publish' would publish (shards, datakit.json, README.md and plots) into "
        "a folder to review.")
    card.add_argument("source", metavar="RUN_DIR_OR_PATH", help="a run directory, or a Parquet/JSON Lines "
                      "file or folder")
    card.add_argument("--out", metavar="DIR", help="new or empty folder to write (default: RUN_DIR/card)")
    card.add_argument("--repo", default="local/preview", metavar="ORG/NAME",
                      help="repository named in the card (default local/preview)")
    card.add_argument("--version", default="0.0.0", metavar="X.Y.Z", help="version named in the card (default 0.0.0)")
    _add_source_options(card)


def _add_train_command(commands: argparse._SubParsersAction) -> None:
    from datakit.train.entrypoints import TRAINERS

    train = commands.add_parser(
        "train", help="train a model on a dataset with TRL (sft, dpo, kto, reward)",
        description="Check that the dataset holds the record kind the trainer needs, then run the TRL trainer and "
        "write the final model, its tokenizer, metrics.jsonl and datakit-train.json (provenance) to --output. "
        "Exit 0: trained; 1: invalid rows or a non-finite loss; 2: wrong record kind, bad settings or arguments.")
    trainers = train.add_subparsers(dest="trainer", metavar="TRAINER", parser_class=_Parser)
    for name, spec in TRAINERS.items():
        one = trainers.add_parser(name, help=spec.description,
                                  description=f"Train with TRL's {spec.trainer_class}: {spec.description}.")
        one.add_argument("--dataset", required=True, metavar="REF",
                         help="a Parquet/JSON Lines file or folder, a run directory, or org/name@X.Y.Z")
        one.add_argument("--model", required=True, metavar="PATH_OR_ID", help="model folder or Hub model id")
        one.add_argument("--output", "-o", metavar="DIR",
                         help=f"folder for the trained model (default runs/train/{name}-DATASET_NAME)")
        one.add_argument("--config", metavar="FILE",
                         help=f"YAML or JSON of {spec.config_class} fields, with optional lora: and diagnostics: "
                         "sections")
        one.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help=f"set a {spec.config_class} field, e.g. max_steps=100, or lora.r=8 (repeatable)")
        one.add_argument("--lora", action="store_true", help="train a LoRA adapter instead of every weight")
        one.add_argument("--split", default="train", help="split of a published dataset (default train)")
        one.add_argument("--sink", metavar="STEP", help="with a run of several sinks: the one to train on (default: "
                         "the only sink whose declared schema the trainer takes)")
        one.add_argument("--registry", metavar="hub|PATH", help=_REGISTRY_HELP)
        one.add_argument("--revision", metavar="REV", help="model revision (branch, tag or commit) on the Hub")
        one.add_argument("--chat-template", metavar="FILE",
                         help="Jinja chat template to use instead of (or where there is no) tokenizer template")
        one.add_argument("--overwrite", action="store_true", help="train into an output folder that is not empty")


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", metavar="STEP", help="with a run of several sinks: the sink whose rows to publish")
    parser.add_argument("--schema", default="auto", metavar="NAME|none",
                        help="record kind the rows must validate as (default: the run's declared schema, else "
                        "detected from the columns; 'none' for no schema)")


def _cmd_validate(args: argparse.Namespace) -> int:
    from datakit.records import get_schema, validate
    from datakit.records.reporting import RENDERERS

    schema = get_schema(args.schema) if args.schema else None
    if args.style and schema is None:
        raise UsageError("--style needs --schema")
    if args.style and schema is not None:
        schema.style(args.style)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    result = validate(args.paths, schema=schema, style=args.style, max_errors=args.max_errors,
                      batch_size=args.batch_size, progress=progress)
    print(RENDERERS[args.format](result))
    return result.exit_code


def _cmd_schemas(args: argparse.Namespace) -> int:
    from datakit.records import get_schema, list_schemas
    from datakit.records.arrow_types import derive_fields

    if args.name is None:
        rows = [("NAME", "STYLES", "REQUIRED COLUMNS", "TRL TRAINERS")]
        for s in list_schemas():
            required = " | ".join(dict.fromkeys(", ".join(st.required) for st in s.styles))
            styles = ", ".join(st.name for st in s.styles if st.name != "default") or "-"
            rows.append((s.name, styles, required, ", ".join(s.trainers) or "-"))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
        print("\n'datakit schemas NAME' prints one; --arrow prints its Arrow schema.")
        return 0
    schema = get_schema(args.name)
    if not args.arrow:
        print(json.dumps(schema.document, indent=2, ensure_ascii=False))
        return 0
    for style in schema.styles:
        if len(schema.styles) > 1:
            print(f"# {schema.name} ({style.name})")
        for f in derive_fields(style.node, schema.resolve):
            print(f"{f.name}: {f.type}{'' if f.nullable else ' not null'}")
        print()
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from datakit.pipeline import run
    from datakit.pipeline.summary import render_summary

    progress = sys.stderr.isatty() if args.progress is None else args.progress
    result = run(args.recipe, args.overrides, profile=args.profile, resume=args.resume, overwrite=args.overwrite,
                 retry_failed=args.retry_failed, executor=args.executor, address=args.address,
                 workers=args.workers, progress=progress)
    if args.json:
        print(json.dumps(result.summary, indent=2))
    else:
        if result.retried:
            for step_id, counts in result.retried.items():
                print(f"retried {counts['retried']:,} failed rows of '{step_id}': {counts['recovered']:,} recovered")
        print(render_summary(result.summary))
    return 0


def _cmd_steps(args: argparse.Namespace) -> int:
    from datakit.pipeline import available, lookup
    from datakit.pipeline.params import describe

    if args.name is None:
        registered = available()
        width = max(len(n) for n in registered)
        for name, cls in registered.items():
            doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
            print(f"{name.ljust(width)}  {cls.kind.ljust(6)}  {doc}")
            params = ", ".join(p.name if p.required else f"{p.name}={json.dumps(p.default)}"
                               for p in describe(cls.Params))
            if params:
                print(f"{''.ljust(width)}          with: {params}")
        print("\n'datakit steps NAME' shows a step's parameters.")
        return 0
    try:
        cls = lookup(args.name)
    except LookupError as exc:
        raise UsageError(str(exc)) from None
    print(f"{args.name} ({cls.kind} step{', pure' if cls.pure else ''})")
    print()
    print(inspect_doc(cls))
    print()
    params = describe(cls.Params)
    if not params:
        print("no parameters")
    for p in params:
        default = "required" if p.required else f"default {json.dumps(p.default)}"
        print(f"  {p.name}: {p.type} ({default})")
        print(f"      {p.help}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from datakit.verify.report import render_report, verify_dataset

    modes = ("strict", "loose") if args.mode == "both" else (args.mode,)
    report = verify_dataset(args.paths, modes=modes, constraints=args.constraints, responses=args.responses,
                            source=args.source)
    print(json.dumps(report.to_dict(), indent=2) if args.json else render_report(report))
    if args.fail_under is not None:
        mean = report.modes[modes[0]].to_dict()["mean_csr"]
        if mean is None or mean < args.fail_under:
            print(f"datakit: mean CSR {mean if mean is None else round(mean, 4)} is below {args.fail_under}",
                  file=sys.stderr)
            return 1
    return 0


def _cmd_verifiers(args: argparse.Namespace) -> int:
    import inspect

    from datakit.verify import get_verifier, verifiers

    if args.name is None:
        found = verifiers()
        width = max(len(v) for v in found)
        for constraint_id, v in found.items():
            print(f"{constraint_id.ljust(width)}  {v.scope.ljust(8)}  {v.description}")
            if v.arguments:
                print(f"{''.ljust(width)}  {''.ljust(8)}  kwargs: {', '.join(v.arguments)}")
        print("\n'datakit verifiers ID' describes one.")
        return 0
    v = get_verifier(args.name)
    print(f"{v.id} ({v.scope} constraint{', reads the prompt' if v.needs_prompt else ''})")
    print()
    print(inspect.cleandoc(inspect.getdoc(v.check) or v.description))
    print()
    print(f"kwargs: {', '.join(v.arguments) or 'none'}")
    return 0


def inspect_doc(cls: type) -> str:
    import inspect

    return inspect.cleandoc(cls.__doc__ or "")


def _cmd_tiny_model(args: argparse.Namespace) -> int:
    from datakit.testing import build_chat_model, build_reward_model

    build = build_reward_model if args.reward else build_chat_model
    print(build(args.out, args.family, seed=args.seed, overwrite=args.overwrite))
    return 0


def _cmd_classifier(args: argparse.Namespace) -> int:
    import os

    from datakit.curate.classifiers import FastTextSettings, train_classifier

    if args.action is None:
        raise UsageError("name an action: 'datakit classifier train ...' (see 'datakit classifier --help')")
    settings = FastTextSettings(epochs=args.epochs, lr=args.lr, dim=args.dim, word_ngrams=args.word_ngrams,
                                bucket=args.bucket, threads=args.threads)
    result = train_classifier(args.data, args.output, text_column=args.text_column, label_column=args.label_column,
                              role=None if args.role == "all" else args.role,
                              threshold=args.threshold, positive=args.positive, valid_fraction=args.valid_fraction,
                              seed=args.seed, settings=settings)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0

    def counts(by_label: dict[str, int]) -> str:
        return f"{sum(by_label.values()):,} rows (" + ", ".join(f"{k} {v:,}" for k, v in by_label.items()) + ")"

    def number(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    print(f"trained on {counts(result.counts['train'])}; skipped {result.counts['skipped']:,} without text or label")
    if result.counts["valid"]:
        line = f"held out {counts(result.counts['valid'])}: accuracy {number(result.metrics['accuracy'])}"
        if result.positive is not None:
            line += (f", precision {number(result.metrics['precision'])}, recall {number(result.metrics['recall'])}"
                     f" (positive: {result.positive})")
        print(line)
    size = os.path.getsize(result.model)
    print(f"wrote {result.model} ({size / 1e6:.1f} MB) and {result.model}.json")
    return 0


def _schema_option(value: str) -> str | None:
    return None if value == "none" else value


def _cmd_publish(args: argparse.Namespace) -> int:
    from datakit.hub.local_registry import default_root
    from datakit.hub.publish import publish

    where = "the Hugging Face Hub" if args.registry == "hub" else (args.registry or default_root())
    if args.skip_existing:
        from datakit.hub.publish import already_published

        existing = already_published(args.source, args.repo, args.version, registry=args.registry,
                                     output=args.output, schema=_schema_option(args.schema))
        if existing is not None:
            print(f"{existing.repo}@{existing.version} is already published in {where} with exactly these rows; "
                  "nothing to do")
            return 0
    info = publish(args.source, args.repo, args.version, registry=args.registry, private=args.private,
                   message=args.message, output=args.output, schema=_schema_option(args.schema))
    rows = "" if info.rows is None else f", {info.rows:,} rows"
    print(f"published {info.repo}@{info.version} (tag {info.tag}{rows}, revision {info.revision[:12]}) to {where}")
    return 0


def _cmd_pull(args: argparse.Namespace) -> int:
    from datakit.hub.pull import pull

    print(pull(args.ref, to=args.to, registry=args.registry))
    return 0


def _cmd_versions(args: argparse.Namespace) -> int:
    from datakit.hub.pull import versions

    found = versions(args.repo, registry=args.registry)
    if args.json:
        print(json.dumps([{"version": v.version, "tag": v.tag, "revision": v.revision, "rows": v.rows,
                           "created": v.created} for v in found], indent=2))
        return 0
    if not found:
        print(f"{args.repo}: no published versions")
        return 0
    table = [("VERSION", "ROWS", "CREATED", "REVISION")]
    table += [(v.version, "-" if v.rows is None else f"{v.rows:,}", v.created or "-", v.revision[:12]) for v in found]
    widths = [max(len(r[i]) for r in table) for i in range(3)]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
    return 0


def _cmd_diff(args: argparse.Namespace) -> int:
    from datakit.hub.diff import diff
    from datakit.hub.refs import parse_ref

    for ref in (args.a, args.b):  # both are checked before anything is downloaded
        parse_ref(ref)
    result = diff(args.a, args.b, registry=args.registry, examples=args.examples)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.render())
    return 0


def _cmd_card(args: argparse.Namespace) -> int:
    from pathlib import Path

    from datakit.hub.staging import stage

    source = Path(args.source)
    if args.out is None and not (source / "run.json").is_file():
        raise UsageError("--out is needed when the source is not a run directory")
    out = Path(args.out) if args.out is not None else source / "card"
    manifest = stage(source, out, repo=args.repo, version=args.version, output=args.output,
                     schema=_schema_option(args.schema))
    print(f"staged {manifest['rows']:,} rows in {len(manifest['files'])} shard(s) with the card: {out / 'README.md'}")
    return 0


def _train_command_line(args: argparse.Namespace) -> list[str]:
    """The train command as parsed, in a canonical order (kept in the model's provenance)."""
    line = ["datakit", "train", args.trainer, "--dataset", str(args.dataset), "--model", args.model]
    for flag, value in (("--output", args.output), ("--config", args.config), ("--registry", args.registry),
                        ("--sink", args.sink),
                        ("--revision", args.revision), ("--chat-template", args.chat_template)):
        if value is not None:
            line += [flag, str(value)]
    if args.split != "train":
        line += ["--split", args.split]
    for item in args.overrides:
        line += ["--set", item]
    line += [flag for flag, on in (("--lora", args.lora), ("--overwrite", args.overwrite)) if on]
    return line


def _cmd_train(args: argparse.Namespace) -> int:
    from datakit.train.entrypoints import train

    if args.trainer is None:
        raise UsageError("name a trainer: 'datakit train {sft,dpo,kto,reward} ...' (see 'datakit train --help')")
    result = train(args.trainer, args.dataset, args.model, output=args.output, config_file=args.config,
                   sets=args.overrides, lora=args.lora, split=args.split, registry=args.registry,
                   revision=args.revision, chat_template=args.chat_template, overwrite=args.overwrite,
                   sink=args.sink, command=_train_command_line(args))
    data = result.data
    converted = f", {data.converted}" if data.converted else ""
    print(f"trained {args.trainer} on {data.rows:,} rows from {data.source_rows:,} {data.record_kind} rows "
          f"({data.style}{converted})")
    for note in result.notes:
        print(f"note: {note}")
    loss = result.metrics.get("train_loss")
    steps = result.log_history[-1].get("step") if result.log_history else None
    print(f"steps {steps}, train_loss {loss:.4f}" if isinstance(loss, float) else f"steps {steps}")
    what = "LoRA adapter" if result.lora else "model"
    print(f"wrote the {what} and tokenizer to {result.output}")
    print(f"metrics: {result.output / 'metrics.jsonl'}; provenance: {result.provenance}")
    return 0


COMMANDS = {"validate": _cmd_validate, "run": _cmd_run, "steps": _cmd_steps, "schemas": _cmd_schemas,
            "verify": _cmd_verify, "verifiers": _cmd_verifiers, "tiny-model": _cmd_tiny_model,
            "classifier": _cmd_classifier, "publish": _cmd_publish, "pull": _cmd_pull, "versions": _cmd_versions,
            "diff": _cmd_diff, "card": _cmd_card, "train": _cmd_train}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        return COMMANDS[args.command](args)
    except DatakitError as e:
        print(f"datakit: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("datakit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` and similar: stop quietly.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
