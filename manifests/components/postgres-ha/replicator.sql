-- The streaming-replication login of Patroni's members (PATRONI_REPLICATION_*), made, or
-- given the Secret's password, on every start of a primary (the StatefulSet's command runs
-- it as the superuser before roles.sql). Patroni makes it when it initialises a cluster, but
-- not when it takes over a data directory an earlier single-member release made, and the
-- other members cannot clone the primary without it. This one commit does not wait for a
-- synchronous standby: there is none before a member has cloned, which needs this login.
\set ON_ERROR_STOP on
\getenv password PATRONI_REPLICATION_PASSWORD
set synchronous_commit = local;
select format('%s role replicator with replication login password %L',
              case when exists (select from pg_roles where rolname = 'replicator')
                   then 'alter' else 'create' end,
              :'password')
\gexec
