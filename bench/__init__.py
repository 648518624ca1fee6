"""`nox -s bench`: the gateway against the direct driver and Supabase postgres-meta.

One run, one machine, one throwaway PostgreSQL on loopback. Reading order:
`database` (server, roles, tables) -> `workloads` (the SQL each system runs) ->
`systems` (gateway and postgres-meta processes) -> `loadgen` (wrk) and `direct`
(psycopg2 threads, the floor) -> `streaming` (1M rows, peak RSS) -> `samerun` (every
HTTP system on one pinned core, CPU per request from /proc, beside `floors`: HTTP servers
with no database) -> `profile` (py-spy of one worker) -> `report`.
`python -m bench` runs it all (see `__main__`).
"""
