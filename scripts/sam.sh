#!/usr/bin/env bash
# Validate (cfn-lint) and build the SAM application, the way a deployment would build it.
#
# The SAM CLI lives in its own venv (.venv-sam): it pins a boto3 and an aws-sam-translator of its
# own, which must not replace the project's. Only the package registry is needed: the layers are
# built by their Makefiles with pip for the Lambda platform, no container. A second run reuses
# the venv and SAM's build cache (.aws-sam/cache), so it takes seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SAM_CLI_VERSION="1.170.0"
PIP_VERSION="26.3"
VENV="$ROOT/.venv-sam"
STAMP="$VENV/.installed-sam-$SAM_CLI_VERSION-pip-$PIP_VERSION"
BASE_PYTHON="${SAM_BASE_PYTHON:-python3}"

export SAM_CLI_TELEMETRY=0
export SAM_CLI_POLL_DELAY="${SAM_CLI_POLL_DELAY:-1}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

# shellcheck source=scripts/tool-venv.sh
. "$ROOT/scripts/tool-venv.sh"
ensure_tool_venv "$VENV" "$STAMP" "$BASE_PYTHON" \
    "aws-sam-cli==$SAM_CLI_VERSION" "pip==$PIP_VERSION"

# The layer Makefiles install wheels with this interpreter's pip (a known version).
export PYTHON="$VENV/bin/python"

echo "sam validate --lint"
"$VENV/bin/sam" validate --lint --template-file template.yaml --region "$AWS_DEFAULT_REGION"

echo "sam build"
"$VENV/bin/sam" build --template-file template.yaml --cached --parallel \
    --build-dir .aws-sam/build --cache-dir .aws-sam/cache "$@"
