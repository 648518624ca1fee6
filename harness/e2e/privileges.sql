-- What the logins of roles.sql (gateway, reader) and PUBLIC may do in the application
-- database, read from the catalogs as the superuser: one row a privilege,
-- grantee <tab> privilege <tab> object. harness/e2e/privileges.py holds the expected rows.
--
-- ACLs: every object's entries, a NULL ACL (the defaults: PUBLIC's and the owner's) made
-- explicit with acldefault, the owner's own entries left out (ownership has rows of its
-- own). PUBLIC's entries count only on the app's objects (this database, schemas and
-- relations outside the system's, the app's functions and the large-object functions
-- roles.sql revokes): PostgreSQL's defaults elsewhere are not roles.sql's doing.
-- Role attributes, memberships (either side) and ownership complete it; objects in schema
-- app are one ownership row. Rows with grantee '(relation)' list the relations of schema
-- app, for which the reader's SELECT is expected.
WITH logins AS (
    SELECT oid, rolname FROM pg_roles WHERE rolname IN ('gateway', 'reader')
),
grantees AS (
    SELECT oid, rolname FROM logins UNION ALL SELECT 0, 'PUBLIC'
),
relations AS (
    SELECT c.oid, c.relowner, c.relacl, c.relkind, n.nspname,
           CASE c.relkind WHEN 'S' THEN 'sequence ' WHEN 'v' THEN 'view '
                WHEN 'm' THEN 'materialized view ' WHEN 'f' THEN 'foreign table '
                ELSE 'table ' END || format('%I.%I', n.nspname, c.relname) AS label
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
),
system_schemas AS (
    SELECT oid FROM pg_namespace
    WHERE nspname IN ('pg_catalog', 'information_schema') OR nspname LIKE 'pg\_toast%'
),
acl AS (
    SELECT 'database ' || quote_ident(datname) AS object, datdba AS owner,
           aclexplode(coalesce(datacl, acldefault('d', datdba))) AS entry,
           datname = current_database() AS public_counts
    FROM pg_database
    UNION ALL
    SELECT 'schema ' || quote_ident(nspname), nspowner,
           aclexplode(coalesce(nspacl, acldefault('n', nspowner))),
           oid NOT IN (SELECT oid FROM system_schemas)
    FROM pg_namespace
    UNION ALL
    SELECT label, relowner,
           aclexplode(coalesce(relacl, acldefault(
               (CASE relkind WHEN 'S' THEN 's' ELSE 'r' END)::"char", relowner))),
           nspname NOT IN ('pg_catalog', 'information_schema')
    FROM relations
    UNION ALL
    SELECT format('column %I.%I.%I', n.nspname, c.relname, a.attname), c.relowner,
           aclexplode(a.attacl), c.relnamespace NOT IN (SELECT oid FROM system_schemas)
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE a.attacl IS NOT NULL
    UNION ALL
    SELECT 'function ' || p.oid::regprocedure::text, p.proowner,
           aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))),
           p.pronamespace NOT IN (SELECT oid FROM system_schemas)
           OR p.oid IN ('lo_creat(integer)'::regprocedure, 'lo_create(oid)'::regprocedure,
                        'lo_from_bytea(oid, bytea)'::regprocedure)
    FROM pg_proc p
    UNION ALL
    SELECT 'large object ' || oid, lomowner,
           aclexplode(coalesce(lomacl, acldefault('L', lomowner))), true
    FROM pg_largeobject_metadata
    UNION ALL
    SELECT 'language ' || quote_ident(lanname), lanowner,
           aclexplode(coalesce(lanacl, acldefault('l', lanowner))), false
    FROM pg_language
    UNION ALL
    SELECT 'tablespace ' || quote_ident(spcname), spcowner,
           aclexplode(coalesce(spcacl, acldefault('t', spcowner))), true
    FROM pg_tablespace
    UNION ALL
    SELECT 'parameter ' || parname, NULL::oid, aclexplode(paracl), true
    FROM pg_parameter_acl
    UNION ALL
    SELECT format('default privileges of %s%s on %s', pg_get_userbyid(d.defaclrole),
                  coalesce(' in schema ' || quote_ident(n.nspname), ''),
                  CASE d.defaclobjtype WHEN 'r' THEN 'tables' WHEN 'S' THEN 'sequences'
                       WHEN 'f' THEN 'functions' WHEN 'T' THEN 'types'
                       ELSE 'schemas' END),
           d.defaclrole, aclexplode(d.defaclacl), true
    FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
),
owned AS (
    SELECT datdba AS owner, 'database ' || quote_ident(datname) AS object, NULL AS schema
    FROM pg_database
    UNION ALL
    SELECT nspowner, 'schema ' || quote_ident(nspname), NULL FROM pg_namespace
    UNION ALL
    SELECT relowner, label, nspname FROM relations
    UNION ALL
    SELECT p.proowner, 'function ' || p.oid::regprocedure::text, n.nspname
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    UNION ALL
    SELECT t.typowner, 'type ' || t.oid::regtype::text, n.nspname
    FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    UNION ALL
    SELECT lomowner, 'large objects', NULL FROM pg_largeobject_metadata
)
SELECT g.rolname, (entry).privilege_type
       || CASE WHEN (entry).is_grantable THEN ' WITH GRANT OPTION' ELSE '' END, object
FROM acl JOIN grantees g ON g.oid = (entry).grantee
WHERE (entry).grantee IS DISTINCT FROM owner AND (g.oid <> 0 OR public_counts)
UNION
SELECT rolname, attribute, 'role attribute'
FROM pg_roles, LATERAL (
    VALUES ('SUPERUSER', rolsuper), ('CREATEROLE', rolcreaterole), ('CREATEDB', rolcreatedb),
           ('REPLICATION', rolreplication), ('BYPASSRLS', rolbypassrls), ('LOGIN', rolcanlogin)
) AS attributes (attribute, granted)
WHERE rolname IN ('gateway', 'reader') AND granted
UNION
SELECT m.rolname, 'MEMBER OF', 'role ' || r.rolname
FROM pg_auth_members am
JOIN pg_roles m ON m.oid = am.member
JOIN pg_roles r ON r.oid = am.roleid
WHERE m.rolname IN ('gateway', 'reader') OR r.rolname IN ('gateway', 'reader')
UNION
SELECT l.rolname, 'OWNER',
       CASE WHEN o.schema = 'app' THEN 'objects in schema app' ELSE o.object END
FROM logins l JOIN owned o ON o.owner = l.oid
UNION
SELECT '(relation)', '', label
FROM relations WHERE nspname = 'app' AND relkind IN ('r', 'p', 'v', 'm', 'f')
ORDER BY 1, 3, 2
