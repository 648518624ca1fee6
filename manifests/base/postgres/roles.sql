-- The database's logins, created once, by the superuser, when the data directory is new:
-- PostgreSQL's /docker-entrypoint-initdb.d runs this with psql (the ConfigMap postgres-init
-- carries it), and harness.local.provision runs the same file for the local servers of
-- `nox -s serve`, the integration tests and the benchmark.
--
-- Passwords reach SQL only as psql variables read from the environment (\getenv, psql 15+):
-- never on a command line, and :'...' quotes them as literals.
\getenv gateway_password GATEWAY_PASSWORD
\getenv reader_password READER_PASSWORD
\getenv database APP_DATABASE

-- The gateway's own login: it owns the application database and is a member of no other
-- role, so nothing it runs can borrow another role's privileges.
CREATE ROLE gateway LOGIN PASSWORD :'gateway_password';
-- Tokens mapped to `reader` log in as reader: SELECT on the tables, nothing else (no
-- temporary tables either), and read-only transactions unless a session asks otherwise.
CREATE ROLE reader LOGIN PASSWORD :'reader_password';
ALTER ROLE reader SET default_transaction_read_only = on;

CREATE DATABASE :"database" OWNER gateway;
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"database" TO reader;

\connect :database
GRANT USAGE ON SCHEMA public TO reader;
ALTER DEFAULT PRIVILEGES FOR ROLE gateway IN SCHEMA public GRANT SELECT ON TABLES TO reader;
