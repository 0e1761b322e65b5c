#!/usr/bin/env bash
# Policy check of the deployment with checkov: template.yaml as written, and the CloudFormation
# that SAM makes of it (the functions' roles, the API's stage, the event source mappings).
#
# checkov lives in its own venv (.venv-checkov), pinned, away from the project's packages. It runs
# offline: no download of policies or guidelines from any platform (--skip-download,
# BC_SKIP_MAPPING), and no API key, so nothing is sent anywhere. An accepted finding is skipped
# next to its resource in template.yaml (Metadata: checkov: skip:, each with its reason), never
# here; any other finding fails the run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CHECKOV_VERSION="3.3.30"
VENV="$ROOT/.venv-checkov"
STAMP="$VENV/.installed-checkov-$CHECKOV_VERSION"
BASE_PYTHON="${CHECKOV_BASE_PYTHON:-python3}"
PROJECT_PYTHON="$ROOT/.venv/bin/python"

export BC_SKIP_MAPPING=TRUE
export CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false
export PYTHONWARNINGS=ignore

# shellcheck source=scripts/tool-venv.sh
. "$ROOT/scripts/tool-venv.sh"
ensure_tool_venv "$VENV" "$STAMP" "$BASE_PYTHON" "checkov==$CHECKOV_VERSION"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cp template.yaml "$WORK/template.yaml"
"$PROJECT_PYTHON" - "$WORK/expanded.json" <<'EOF'
import json
import sys
from pathlib import Path

from sansnuages.tools.local.template import expand, parse_template

cfn = expand(parse_template(Path("template.yaml").read_text()))
Path(sys.argv[1]).write_text(json.dumps(cfn, indent=1))
EOF

echo "checkov $CHECKOV_VERSION: template.yaml and its SAM expansion"
"$VENV/bin/checkov" --directory "$WORK" --framework cloudformation --skip-download \
    --quiet --compact "$@"
