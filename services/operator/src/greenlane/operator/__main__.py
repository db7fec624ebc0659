"""Entry point: `python -m greenlane.operator` and the `greenlane-operator` script."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence

from greenlane.core.lifecycle import run_service
from greenlane.core.logs import setup_logging
from greenlane.core.settings import load_settings

PROG = "python -m greenlane.operator"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="GreenLane operator: runs FleetSimulation resources as simulator Jobs. "
        "Configured by GREENLANE_* variables (see docs/operator.md); logs in with $KUBECONFIG, "
        "else the pod's service account, else ~/.kube/config.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--namespace",
        "-n",
        metavar="NS",
        help="the namespace to watch (default $GREENLANE_OPERATOR_NAMESPACE)",
    )
    where.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    parser.add_argument(
        "--liveness",
        metavar="URL",
        help="kopf's liveness endpoint (default $GREENLANE_LIVENESS_ENDPOINT, "
        "else http://0.0.0.0:8080/healthz); 'none' turns it off",
    )
    return parser


async def main(args: argparse.Namespace) -> int:
    # Imported here so that --help stays fast and works without kopf's start-up cost.
    from greenlane.operator.runner import run_operator
    from greenlane.operator.settings import OperatorSettings

    settings = load_settings(OperatorSettings)
    setup_logging("operator", settings.log_level, settings.log_format)
    namespace = args.namespace or settings.operator_namespace
    if not args.all_namespaces and not namespace:
        sys.stderr.write(
            "error: no namespace to watch: set GREENLANE_OPERATOR_NAMESPACE, "
            "or pass --namespace NS or --all-namespaces\n"
        )
        return 2
    liveness = args.liveness or settings.liveness_endpoint
    return await run_operator(
        settings,
        namespaces=() if args.all_namespaces else [str(namespace)],
        clusterwide=bool(args.all_namespaces),
        liveness_endpoint=None if liveness == "none" else liveness,
    )


def run(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run_service(functools.partial(main, args))


if __name__ == "__main__":
    run()
