# A pinned command-line tool in a virtual environment of its own, away from the project's
# packages (the SAM CLI and checkov pin versions of boto3 and others that the project must not
# take). Sourced by the scripts that run such a tool; ROOT is the repository.

find_uv() {
    if [ -x "$ROOT/.venv/bin/uv" ]; then echo "$ROOT/.venv/bin/uv"; else command -v uv || true; fi
}

# ensure_tool_venv VENV STAMP BASE_PYTHON REQUIREMENT...: (re)create VENV with the requirements
# unless STAMP (named after the pinned versions) says it holds them already.
ensure_tool_venv() {
    local venv="$1" stamp="$2" base_python="$3" uv
    shift 3
    [ -f "$stamp" ] && return 0
    uv="$(find_uv)"
    rm -rf "$venv"
    if [ -n "$uv" ]; then
        "$uv" venv --quiet --python "$(command -v "$base_python")" "$venv"
        "$uv" pip install --quiet --python "$venv/bin/python" "$@"
    else
        "$base_python" -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
    fi
    echo '*' > "$venv/.gitignore"
    touch "$stamp"
}
