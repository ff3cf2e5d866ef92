"""`tuner promote`: choose a feasible Pareto trial, write its Ray Serve config, optionally deploy it."""

from __future__ import annotations

import argparse
from pathlib import Path

from tuner.cli.common import pick_study, study_arg
from tuner.front.selection import POLICIES


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("promote", help="choose a feasible Pareto trial and write a Ray Serve config",
                       description="Choose a trial (default policy: cheapest feasible Pareto trial this "
                                   "machine can serve) and write a Ray Serve config for it.")
    study_arg(p)
    p.add_argument("--trial", type=int, default=None, help="promote this trial number instead of the policy's pick")
    p.add_argument("--policy", default="cheapest", choices=list(POLICIES),
                   help="cheapest meeting the SLO (default), fastest / lowest-latency within --max-cost, or "
                        "knee (closest to the ideal point)")
    p.add_argument("--slo-ms", type=float, default=None, help="p95 SLO for the choice (default: the study's)")
    p.add_argument("--max-cost", type=float, default=None, metavar="USD", help="cost budget per million inferences")
    p.add_argument("--dry-run", action="store_true", help="print the choice, why, and the runners-up; write nothing")
    p.add_argument("--out", type=Path, default=None,
                   help="where to write the Serve config (default serve_config.yaml; rayservice.yaml with "
                        "--format rayservice)")
    p.add_argument("--format", choices=("serve", "rayservice"), default="serve",
                   help="serve: a Ray Serve config (default); rayservice: a KubeRay RayService manifest instead "
                        "(the same Serve config in spec.serveConfigV2, the proxy bound to 0.0.0.0 in the pod, pods "
                        "sized to the trial; apply it with kubectl apply -f; its header says how to build the image)")
    p.add_argument("--image", default=None, metavar="IMAGE",
                   help="with --format rayservice: the image the pods run: Ray, tuner and the model file "
                        "(default tuner-serve:TUNER_VERSION)")
    p.add_argument("--model-dir", default="/models", metavar="DIR",
                   help="with --format rayservice: the folder in the image holding the model file; the manifest's "
                        "model_path is DIR/FILE_NAME (default /models)")
    p.add_argument("--namespace", default=None, metavar="NS",
                   help="with --format rayservice: the manifest's metadata.namespace (default: kubectl's current one)")
    p.add_argument("--host", default="127.0.0.1", help="HTTP host the server will bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port the server will use (default 8000)")
    p.add_argument("--auth-token-file", type=Path, default=None, metavar="FILE",
                   help="require 'Authorization: Bearer TOKEN' on every V2 route but /v2/health/live and "
                        "/v2/health/ready, TOKEN being FILE's content (16+ characters, mode 600); the config "
                        "stores only its SHA-256 digest, and --deploy verifies with it. Make one: "
                        "python -c \"import secrets; print(secrets.token_urlsafe(32))\" > token.txt; chmod 600 token.txt")
    p.add_argument("--no-auth", action="store_true",
                   help="allow a --host other than a loopback address without --auth-token-file (e.g. behind "
                        "an authenticating proxy); without either, promote refuses such a host")
    p.add_argument("--deploy", action="store_true",
                   help="deploy to a running Ray cluster (tuner's local serving cluster unless --ray-address), "
                        "detached, then verify it under load and roll back if it falls short")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="with --deploy: the cluster's dashboard (http://HOST:8265) or HOST:PORT (dashboard on 8265)")
    p.add_argument("--num-gpus", type=int, default=None, metavar="N",
                   help="with --deploy: GPUs a new local serving cluster declares (default: the GPUs Ray detects)")
    p.add_argument("--verify-s", type=float, default=15.0,
                   help="most seconds of verification load (0: skip; default 15); verification uses the trial's own "
                        "windows, so it runs up to the study's max_measuring_s (30 s by default) when that is longer")
    p.add_argument("--tolerance", type=float, default=0.10,
                   help="verification passes within this share of the trial's throughput and p95 (default 0.10)")
    p.add_argument("--require-approval", action="store_true",
                   help="before writing or deploying anything, wait for a person to approve or reject the choice "
                        "in the dashboard (study NAME.approvals, the form on the request); rejected: exit 1")
    p.add_argument("--approval-timeout-s", type=float, default=None, metavar="S",
                   help="with --require-approval: stop (exit 1, nothing deployed) after S seconds without a "
                        "decision (default: wait until one comes, or Ctrl-C)")
    p.add_argument("--traffic-rps", default=None, metavar="LOW:HIGH",
                   help="autoscale between the replicas LOW and HIGH inferences/s need, derived from the trial's "
                        "measured per-replica capacity at 80%% (headroom 1.25), with target_ongoing_requests from "
                        "the requests in flight per replica it was measured at; written as the deployment's "
                        "autoscaling_config instead of a fixed num_replicas (README, 'Autoscaling')")
    p.add_argument("--upscale-delay-s", type=float, default=None, metavar="S",
                   help="with --traffic-rps: add replicas after S seconds over target (default 3: reacts within "
                        "seconds; replicas report every 1 s, averaged over 5 s)")
    p.add_argument("--downscale-delay-s", type=float, default=None, metavar="S",
                   help="with --traffic-rps: remove replicas after S seconds under target (default 60: a dip "
                        "does not stop a replica needed again at once; Ray's default is 600)")
    p.add_argument("--cluster-cpus", type=int, default=None, metavar="N",
                   help="with --traffic-rps: CPUs the replicas may take, bounding max_replicas (default: this "
                        "machine's cores, where tuner's local serving cluster runs)")
    p.add_argument("--shadow-fraction", default=None, metavar="F",
                   help="accuracy in production: each replica also runs a sampled share F (0 < F <= 1) of live "
                        "instances through the fp32 model, off the request path, and counts top-1 agreement "
                        "(argmax over the last axis of the first output) in ray_tuner_infer_shadow_instances_total "
                        "and ray_tuner_infer_shadow_agreed_total, which tuner watch reads; not for an fp32 trial "
                        "(default: off; README, 'Accuracy in production')")
    return p


def await_approval(study, result, args: argparse.Namespace):
    """Ask for a decision in the dashboard and wait; the Decision, or None when none came in time."""
    from tuner.deploy.approval import record_decision, request_approval, wait_for_decision
    from tuner.study.companions import refresh_dashboard

    approvals, request = request_approval(study, result.choice.trial, result.choice.reason)
    where = f" --storage {args.storage}" if args.storage else ""
    limit = f" up to {args.approval_timeout_s:.0f} s" if args.approval_timeout_s is not None else ""
    print(f"awaiting approval: open the dashboard (tuner dashboard{where}), study {approvals.study_name!r}, "
          f"trial #{request.number}: choose Approve or Reject, type your name, submit. Waiting{limit} "
          "(Ctrl-C stops; nothing is written or deployed before a decision)", flush=True)
    decision = wait_for_decision(approvals, request, result.choice.trial, args.approval_timeout_s)
    if decision is not None:
        record_decision(study, decision)
        refresh_dashboard(study)
    return decision


def rayservice_options(args: argparse.Namespace):
    """`--format rayservice`'s options (None for a Serve config); sets the default --out for the format."""
    from tuner.deploy.rayservice import RayServiceOptions
    from tuner.errors import TunerError

    if args.out is None:
        args.out = Path("rayservice.yaml" if args.format == "rayservice" else "serve_config.yaml")
    if args.format != "rayservice":
        return None
    if args.deploy:
        raise TunerError("Got --deploy with --format rayservice. --deploy deploys a Serve config to a Ray cluster; "
                         f"a RayService is applied to Kubernetes: drop --deploy and run kubectl apply -f {args.out}.")
    return RayServiceOptions(image=args.image, model_dir=args.model_dir, namespace=args.namespace,
                             no_auth=args.no_auth)


def run(args: argparse.Namespace) -> int:
    from serving.auth import endpoint_token
    from tuner.deploy.autoscale import parse_traffic
    from tuner.deploy.promote import parse_shadow_fraction, promote

    shadow = parse_shadow_fraction(args.shadow_fraction)  # a bad value stops it before anything is read
    token = endpoint_token(args.auth_token_file, args.no_auth)  # before anything else: a bad file stops it
    digest = token.sha256 if token is not None else None
    traffic = parse_traffic(args.traffic_rps, args.upscale_delay_s, args.downscale_delay_s, args.cluster_cpus)
    kube = rayservice_options(args)
    study = pick_study(args.study, args.storage)
    gated = args.require_approval and not args.dry_run
    result = promote(study, args.out, args.trial, args.policy, args.host, args.port, slo_ms=args.slo_ms,
                     max_cost=args.max_cost, dry_run=args.dry_run or gated, auth_token_sha256=digest,
                     no_auth=args.no_auth, traffic=traffic, cluster_cpus=args.cluster_cpus, rayservice=kube,
                     shadow_fraction=shadow)
    t, c = result.choice.trial, result.config
    m = t.metrics
    assert m is not None  # the policy only chooses measured trials
    if result.choice.better_unservable:
        b = result.choice.better_unservable
        print(f"note: trial #{b.number} ({b.platform}, ESTIMATED) ranks first by this policy, "
              f"but {b.platform} trials cannot be served on this machine; promoting the best "
              f"servable trial #{t.number} instead.")
    if result.choice.better_measured_once:
        b = result.choice.better_measured_once
        print(f"note: trial #{b.number} ranks first by this policy on its one measurement, but it was not "
              f"re-measured (a single figure that wins is the luckiest of many); promoting the best re-measured "
              f"trial #{t.number} instead (--trial {b.number} promotes it anyway).")
    print(f"promoted trial #{t.number}: {c.label()} ({result.choice.reason})")
    print(f"  measured: {m.throughput_rps:,.0f} inf/s, p95 {m.latency_p95_ms:.3f} ms, "
          f"accuracy {m.accuracy:.4f}, ${m.cost_usd_per_million:.5f} per million")
    for r in result.choice.runners_up:
        if r.config and r.metrics:
            print(f"  runner-up #{r.number}: {r.config.platform} {r.config.precision} b{r.config.batch_size} "
                  f"{r.config.replicas}x{r.config.threads_per_replica}: {r.metrics.throughput_rps:,.0f} inf/s, "
                  f"p95 {r.metrics.latency_p95_ms:.3f} ms, ${r.metrics.cost_usd_per_million:.5f}/M")
    if result.autoscaling is not None:
        print(result.autoscaling.describe())
    if shadow is not None:
        print(f"  shadow: {shadow:g} of live instances also run through fp32 on each replica; top-1 agreement in "
              "ray_tuner_infer_shadow_agreed_total / ray_tuner_infer_shadow_instances_total (tuner watch)")
    if args.dry_run:
        print("dry run: nothing written or deployed")
        return 0
    approval = None
    if gated:
        decision = await_approval(study, result, args)
        if decision is None:
            print(f"no decision within {args.approval_timeout_s:.0f} s: nothing written or deployed")
            return 1
        if not decision.approved:
            print(f"REJECTED by {decision.by} at {decision.at}{f' ({decision.reason})' if decision.reason else ''}: "
                  "nothing written or deployed")
            return 1
        print(f"APPROVED by {decision.by} at {decision.at}{f' ({decision.reason})' if decision.reason else ''}")
        approval = decision.to_dict()
        result = promote(study, args.out, t.number, args.policy, args.host, args.port, slo_ms=args.slo_ms,
                         max_cost=args.max_cost, auth_token_sha256=digest, no_auth=args.no_auth, traffic=traffic,
                         cluster_cpus=args.cluster_cpus, rayservice=kube, shadow_fraction=shadow)
    print(f"wrote {args.out}")
    if token is not None:
        print(f"  every V2 route but /v2/health/* requires 'Authorization: Bearer <the token in "
              f"{args.auth_token_file}>' (the config holds only its SHA-256)")
    if kube is not None:
        print(f"next: build and push the image its header describes, then: kubectl apply -f {args.out}")
        return 0
    if not args.deploy:
        print(f"next: tuner serve {args.out}   (or: serve run {args.out}; or tuner promote ... --deploy)")
        return 0
    from tuner.deploy.rollout import deploy_promotion

    entry = deploy_promotion(study, result, address=args.ray_address, verify_s=args.verify_s, tolerance=args.tolerance,
                             num_gpus=args.num_gpus, approval=approval, auth_token=token)
    if entry.get("rolled_back_to") is not None:
        print(f"promotion of trial #{t.number} FAILED verification; trial #{entry['rolled_back_to']} is serving again")
        return 1
    if entry.get("verdict") == "failed":
        print(f"promotion of trial #{t.number} FAILED verification; nothing was promoted before, so it stays "
              "deployed (tuner undeploy stops it)")
        return 1
    print("stop the local serving cluster with: tuner undeploy")
    return 0
