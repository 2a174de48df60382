#!/usr/bin/env bash
# Regenerate the files derived from zai-proxy-rules.yml:
#   deploy/k8s/shared/prometheusrule.yaml   (PrometheusRule zai-proxy-canary)
#   deploy/prometheus/canary-alerts.json    (the canary alerts' expr/for, for zai-promoter)
# The generator is the test that checks them (e2e/tests/deploy_manifests.rs): with
# ZAI_UPDATE_GENERATED=1 it writes the files instead of comparing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ZAI_UPDATE_GENERATED=1 cargo test -p zai-e2e --test deploy_manifests -- generated_
git status --short -- deploy/k8s/shared/prometheusrule.yaml deploy/prometheus/canary-alerts.json
