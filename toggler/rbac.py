"""The least-privilege RBAC a config needs: one Role and one RoleBinding per target namespace.

`render_rbac(config)` returns plain manifest dicts in a deterministic order; `to_yaml` prints them as a
multi-document stream; `add_subcommand` registers `toggler rbac` on the CLI's sub-parsers. Per namespace:
`list`/`watch` on the workload kinds found there (a list or watch cannot usefully be narrowed by name),
`get`/`patch` on each kind and its `/scale` subresource narrowed by `resourceNames` to the configured
objects, and `list` on pods only with `pod_reasons`. Nothing cluster-wide: the SelfSubjectAccessReviews of
`toggler conntest` are allowed to every authenticated user by the built-in `system:basic-user` role.
Pure module: must not import nio, kubernetes, apscheduler or aiohttp.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from typing import Any

import yaml

from toggler.config import Config
from toggler.loader import ConfigError, load_config

Manifest = dict[str, Any]

RBAC_API = "rbac.authorization.k8s.io/v1"
RESOURCES = {"Deployment": "deployments", "StatefulSet": "statefulsets"}
LABELS = {"app.kubernetes.io/name": "toggler", "app.kubernetes.io/component": "rbac"}


def workloads_by_namespace(config: Config) -> dict[str, dict[str, list[str]]]:
    """namespace → plural resource → sorted object names, both levels sorted."""
    found: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for key, target in config.targets.items():
        found[target.namespace][RESOURCES[target.kind]].add(config.object_name(key))
    return {ns: {res: sorted(names) for res, names in sorted(kinds.items())} for ns, kinds in sorted(found.items())}


def _rules(kinds: dict[str, list[str]], *, pod_reasons: bool) -> list[Manifest]:
    rules: list[Manifest] = [{"apiGroups": ["apps"], "resources": list(kinds), "verbs": ["list", "watch"]}]
    for resource, names in kinds.items():
        rules.append(
            {
                "apiGroups": ["apps"],
                "resources": [resource, f"{resource}/scale"],
                "resourceNames": list(names),
                "verbs": ["get", "patch"],
            }
        )
    if pod_reasons:
        rules.append({"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]})
    return rules


def _meta(name: str, namespace: str) -> Manifest:
    return {"name": name, "namespace": namespace, "labels": dict(LABELS)}


def _role_pair(namespace: str, rules: list[Manifest], *, service_account: str, sa_namespace: str) -> list[Manifest]:
    role = {"apiVersion": RBAC_API, "kind": "Role", "metadata": _meta(service_account, namespace), "rules": rules}
    binding = {
        "apiVersion": RBAC_API,
        "kind": "RoleBinding",
        "metadata": _meta(service_account, namespace),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": service_account},
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": sa_namespace}],
    }
    return [role, binding]


def render_rbac(
    config: Config,
    *,
    service_account: str = "toggler",
    sa_namespace: str = "toggler",
    pod_reasons: bool = False,
) -> list[Manifest]:
    """A Role and a RoleBinding (both named after the ServiceAccount) in each target namespace, sorted."""
    objects: list[Manifest] = []
    for namespace, kinds in workloads_by_namespace(config).items():
        rules = _rules(kinds, pod_reasons=pod_reasons)
        objects += _role_pair(namespace, rules, service_account=service_account, sa_namespace=sa_namespace)
    return objects


def to_yaml(objects: list[Manifest]) -> str:
    """A multi-document YAML stream, keys in the order they were built."""
    return yaml.safe_dump_all(objects, sort_keys=False, explicit_start=True, default_flow_style=False)


HELP = "print the Roles and RoleBindings the config needs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `toggler rbac`. `--config` defaults to SUPPRESS so a global `--config` survives."""
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="config file (default: $TOGGLER_CONFIG, else /etc/toggler/config.yaml, else the legacy variables)",
    )
    parser.add_argument("--namespace", metavar="NS", default="toggler", help="the ServiceAccount's namespace")
    parser.add_argument("--service-account", metavar="NAME", default="toggler", help="the ServiceAccount's name")
    parser.add_argument("--pod-reasons", action="store_true", help="also allow listing pods (readiness reasons)")


def add_subcommand(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `toggler rbac` on an `argparse` sub-parsers object; the handler is `args.handler`."""
    parser = subparsers.add_parser("rbac", help=HELP, description=HELP)
    add_arguments(parser)
    parser.set_defaults(handler=run_rbac)


def run_rbac(args: argparse.Namespace) -> int:
    """Print the RBAC for `args.config`; 0 on success, 2 (with the problems on stderr) on a bad config."""
    try:
        loaded = load_config(getattr(args, "config", None), read_secrets=False)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 2
    objects = render_rbac(
        loaded.config,
        service_account=args.service_account,
        sa_namespace=args.namespace,
        pod_reasons=args.pod_reasons,
    )
    sys.stdout.write(to_yaml(objects))
    return 0
