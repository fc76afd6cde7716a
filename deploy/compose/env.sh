# Sourced by every Traffic Center container of compose.yaml: the settings that come from
# Docker secrets. TC_SECRET_KEY is the HMAC key, the same on every node and for the CLI.
set -eu
secret_key=$(cat /run/secrets/tc_secret_key 2>/dev/null || true)
if [ "${#secret_key}" -lt 44 ]; then
    echo "deploy/secrets/tc_secret_key is missing or shorter than 44 characters (32 bytes):" >&2
    echo "create it with: openssl rand -base64 48 > deploy/secrets/tc_secret_key" >&2
    exit 1
fi
password=$(cat /run/secrets/postgres_password 2>/dev/null || true)
if [ -z "$password" ]; then
    echo "create deploy/secrets/postgres_password: openssl rand -hex 24 > deploy/secrets/postgres_password" >&2
    exit 1
fi
export TC_SECRET_KEY="$secret_key"
export TC_DATABASE_URL="postgresql+asyncpg://tc:${password}@postgres:5432/tc"
unset secret_key password
