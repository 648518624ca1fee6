-- The database's logins, their limits and privileges, applied by the superuser each time
-- PostgreSQL starts: the StatefulSet's container runs this with psql once the server
-- accepts TCP connections (the ConfigMap postgres-roles carries it), so a data directory
-- made by an earlier release gets this release's limits, grants and passwords (the Secret's);
-- harness.local.provision runs the same file for the local servers of `nox -s serve`, the
-- integration tests and the benchmark. Every statement may run again: what exists already
-- is left, what it sets is set again.
--
-- Passwords reach SQL only as psql variables read from the environment (\getenv, psql 15+):
-- never on a command line, and :'...' quotes them as literals.
\getenv gateway_password GATEWAY_PASSWORD
\getenv reader_password READER_PASSWORD
\getenv database APP_DATABASE

-- The gateway's own login: it owns the application database and its schema `app`, and is a
-- member of no other role, so nothing it runs can borrow another role's privileges.
DO $$ BEGIN CREATE ROLE gateway; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
ALTER ROLE gateway LOGIN PASSWORD :'gateway_password';
-- Tokens mapped to `reader` log in as reader: SELECT on the app's tables, nothing else (no
-- temporary tables, no function it was not granted). The gateway opens its transactions
-- read-only (READ_ONLY_ROLES); the default below is for anything else that logs in as it.
DO $$ BEGIN CREATE ROLE reader; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
ALTER ROLE reader LOGIN PASSWORD :'reader_password';
ALTER ROLE reader SET default_transaction_read_only = on;

-- What the server gives each login, set here because no login may set it for itself:
-- temporary files per session (temp_file_limit is superuser-only) and connections at once
-- (a login cannot raise its own). Together they bound the disk one login's temporary files
-- take: 68 x 256 MB for gateway, 68 x 64 MB for reader (docs/security.md). 68 connections
-- hold the manifests' gateway pods through back-to-back rolling updates (5 pods: 2 still
-- draining, 2 old, 1 surge; x 2 workers x (POOL_MAX 5 + 1 ending a backend) + a readiness
-- check each), and both logins fit the StatefulSet's max_connections less 3 for the
-- superuser (tests/unit/gate/test_connection_budget.py).
ALTER ROLE gateway CONNECTION LIMIT 68;
ALTER ROLE gateway SET temp_file_limit = '256MB';
ALTER ROLE reader CONNECTION LIMIT 68;
ALTER ROLE reader SET temp_file_limit = '64MB';
-- Where names resolve for anything that logs in as them (the gateway pins it per
-- connection too: POSTGRES_SCHEMA).
ALTER ROLE gateway SET search_path = app, public;
ALTER ROLE reader SET search_path = app, public;

-- CREATE DATABASE has no IF NOT EXISTS and refuses a transaction block: psql runs the
-- statement this query returns, when it returns one.
SELECT format('CREATE DATABASE %I OWNER gateway', :'database')
    WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'database')
\gexec
ALTER DATABASE :"database" OWNER TO gateway;
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"database" TO reader;
-- The server's own databases are the superuser's: no other login connects to them, or makes
-- temporary tables there.
REVOKE ALL ON DATABASE postgres, template1 FROM PUBLIC;

\connect :database
-- `public` is on every login's default search path, so whatever is created there runs as
-- whoever calls it (a `public.upper(varchar)` outranks `pg_catalog.upper(text)`): it
-- belongs to the superuser and nobody creates in it. The app's objects live in `app`.
ALTER SCHEMA public OWNER TO CURRENT_USER;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
CREATE SCHEMA IF NOT EXISTS app AUTHORIZATION gateway;
GRANT USAGE ON SCHEMA app TO reader;
ALTER DEFAULT PRIVILEGES FOR ROLE gateway IN SCHEMA app GRANT SELECT ON TABLES TO reader;
-- A function the gateway creates is executable by whom it grants, not by everyone.
ALTER DEFAULT PRIVILEGES FOR ROLE gateway REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
-- Creating a large object needs no privilege on anything, and PostgreSQL 15 allows it in a
-- read-only transaction (16 and later refuse): only the gateway's own login may. Writing
-- to an existing one already needs its owner's grant.
REVOKE EXECUTE ON FUNCTION lo_creat(integer), lo_create(oid), lo_from_bytea(oid, bytea)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lo_creat(integer), lo_create(oid), lo_from_bytea(oid, bytea)
    TO gateway;
