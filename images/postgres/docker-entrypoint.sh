#!/bin/bash
# Entrypoint with the official postgres image's contract, so manifests and
# tests behave the same with this offline image and with postgres:15:
#   POSTGRES_PASSWORD (or _FILE) required unless POSTGRES_HOST_AUTH_METHOD=trust,
#   POSTGRES_USER [postgres], POSTGRES_DB [$POSTGRES_USER], PGDATA, POSTGRES_INITDB_ARGS,
#   /docker-entrypoint-initdb.d/*.sh|*.sql|*.sql.gz run once on first initialisation,
#   the server runs as the postgres user (UID 999) as PID 1, so signals reach it directly.
set -Eeuo pipefail

# VAR_FILE=/path sets VAR from that file (Kubernetes/Docker secrets).
file_env() {
    local var="$1" file_var="${1}_FILE" default="${2:-}"
    if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
        echo >&2 "error: both $var and $file_var are set (but are exclusive)"
        exit 1
    fi
    local value="$default"
    if [ -n "${!var:-}" ]; then
        value="${!var}"
    elif [ -n "${!file_var:-}" ]; then
        value="$(< "${!file_var}")"
    fi
    export "$var"="$value"
    unset "$file_var"
}

prepare_dirs() {
    mkdir -p "$PGDATA" /var/run/postgresql
    chmod 00700 "$PGDATA" || :
    if [ "$(id -u)" = 0 ]; then
        find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
        chown postgres:postgres /var/run/postgresql
    fi
}

init_database() {
    file_env POSTGRES_PASSWORD
    file_env POSTGRES_USER postgres
    file_env POSTGRES_DB "$POSTGRES_USER"
    file_env POSTGRES_INITDB_ARGS
    local auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
    if [ -z "$POSTGRES_PASSWORD" ] && [ "$auth" != trust ]; then
        cat >&2 <<-'EOM'
			Error: Database is uninitialized and superuser password is not specified.
			       You must specify POSTGRES_PASSWORD to a non-empty value for the
			       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".
		EOM
        exit 1
    fi

    # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of arguments
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
        --auth-local=trust --auth-host="$auth" $POSTGRES_INITDB_ARGS
    printf '\nhost all all all %s\n' "$auth" >> "$PGDATA/pg_hba.conf"
    printf "\nlisten_addresses = '*'\n" >> "$PGDATA/postgresql.conf"

    # A server on the Unix socket only, so nothing connects before init is done.
    PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -w start \
        -o "-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql"
    local psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc
        --host /var/run/postgresql)
    if [ "$POSTGRES_DB" != postgres ]; then
        "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<"CREATE DATABASE :\"db\";"
    fi
    run_init_scripts "${psql[@]}" --dbname "$POSTGRES_DB"
    PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -m fast -w stop
    echo "PostgreSQL init process complete; ready for start up."
}

run_init_scripts() {
    local file
    for file in /docker-entrypoint-initdb.d/*; do
        case "$file" in
            *.sh)
                if [ -x "$file" ]; then
                    echo "$0: running $file"
                    "$file"
                else
                    echo "$0: sourcing $file"
                    # shellcheck disable=SC1090
                    . "$file"
                fi
                ;;
            *.sql) echo "$0: running $file"; "$@" -f "$file" ;;
            *.sql.gz) echo "$0: running $file"; gunzip -c "$file" | "$@" ;;
            *) [ -e "$file" ] && echo "$0: ignoring $file" ;;
        esac
    done
}

main() {
    if [ "${1:0:1}" = '-' ]; then
        set -- postgres "$@"
    fi
    if [ "$1" != postgres ]; then
        exec "$@"
    fi
    prepare_dirs
    if [ "$(id -u)" = 0 ]; then
        # Drop to the postgres user and start over (the server refuses root).
        exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
    fi
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        init_database
    fi
    exec "$@"
}

main "$@"
