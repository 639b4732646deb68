"""asyncpg on ferroloop against a real PostgreSQL server that this module's fixture starts
(initdb into a temporary directory, TLS on with CPython's test certificate for localhost,
``pg_ctl start`` on a private port and a Unix socket directory in that temporary directory; as
the ``postgres`` user, or ``nobody``, when running as root, since PostgreSQL refuses to run as
root) and stops afterwards.

The server binaries are found on PATH or in Debian's /usr/lib/postgresql/<version>/bin
(``apt-get install postgresql``; tests/run_all.sh installs it when missing)."""

from __future__ import annotations

import asyncio
import glob
import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile

import pytest

from _integ import certdata, check_loop, free_port, run, tls_contexts

asyncpg = pytest.importorskip("asyncpg")


def find_pg_bin() -> str | None:
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(os.path.realpath(initdb))
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return os.path.dirname(found[-1]) if found else None


@pytest.fixture(scope="module")
def postgres():
    bindir = find_pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in "
                    "/usr/lib/postgresql/*/bin: install Debian's postgresql package")
    base = tempfile.mkdtemp(prefix="ferroloop-pg-")
    os.chmod(base, 0o755)
    run_as = {}
    if os.geteuid() == 0:  # postgres refuses to run as root
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pw = pwd.getpwnam("nobody")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        run_as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    data, sockdir, log = (os.path.join(base, n) for n in ("data", "sock", "server.log"))
    port = free_port()
    env = dict(os.environ, LC_ALL="C", HOME=base)

    def pg(*args, check=True):
        return subprocess.run([os.path.join(bindir, args[0]), *args[1:]], env=env, cwd=base,
                              capture_output=True, text=True, check=check, timeout=120,
                              **run_as)

    # TLS: CPython's test certificate for localhost (key and certificate in one file),
    # private to the server's user as PostgreSQL requires
    keycert = os.path.join(base, "keycert.pem")
    shutil.copy(certdata("keycert3.pem"), keycert)
    os.chmod(keycert, 0o600)
    if run_as:
        os.chown(keycert, run_as["user"], run_as["group"])
    try:
        if run_as:
            subprocess.run(["mkdir", sockdir], check=True, **run_as)
        else:
            os.mkdir(sockdir)
        pg("initdb", "-D", data, "-U", "ferro", "--auth=trust", "-E", "UTF8", "--no-sync")
        pg("pg_ctl", "start", "-D", data, "-l", log, "-w", "-t", "60", "-o",
           f"-p {port} -k {sockdir} -c listen_addresses=127.0.0.1 -c fsync=off "
           "-c max_connections=50 "
           f"-c ssl=on -c ssl_cert_file={keycert} -c ssl_key_file={keycert}")
    except subprocess.CalledProcessError as exc:
        server_log = open(log).read() if os.path.exists(log) else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {exc}\n{exc.stdout}\n{exc.stderr}\n{server_log}")
    try:
        yield {"host": "127.0.0.1", "port": port, "user": "ferro", "database": "postgres",
               "sockdir": sockdir}
    finally:
        pg("pg_ctl", "stop", "-D", data, "-m", "fast", "-w", check=False)
        shutil.rmtree(base, ignore_errors=True)


def dsn(pg) -> dict:
    return {k: pg[k] for k in ("host", "port", "user", "database")}


def test_asyncpg_queries_transactions_copy(postgres, loop_name):
    table = f"items_{loop_name}"

    async def main():
        conn = await asyncpg.connect(**dsn(postgres))
        try:
            check_loop(loop_name)
            assert await conn.fetchval("SELECT 1 + 1") == 2
            rows = await conn.fetch("SELECT g, g * g AS sq FROM generate_series(1, 1000) g")
            assert len(rows) == 1000
            assert sum(r["sq"] for r in rows) == sum(g * g for g in range(1, 1001))

            await conn.execute(f"DROP TABLE IF EXISTS {table}")
            await conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name text, v float8)")

            # a committed and a rolled-back transaction
            async with conn.transaction():
                await conn.executemany(f"INSERT INTO {table} VALUES ($1, $2, $3)",
                                       [(i, f"n{i}", i / 2) for i in range(100)])
            with pytest.raises(ZeroDivisionError):
                async with conn.transaction():
                    await conn.execute(f"DELETE FROM {table}")
                    raise ZeroDivisionError
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 100

            # a prepared statement, executed many times
            stmt = await conn.prepare(f"SELECT name, v FROM {table} WHERE id = $1")
            for i in range(0, 100, 7):
                assert tuple(await stmt.fetchrow(i)) == (f"n{i}", i / 2)

            # COPY of 20,000 records
            records = [(i, f"copied {i}", float(i)) for i in range(1000, 21000)]
            result = await conn.copy_records_to_table(table, records=records)
            assert result == "COPY 20000"
            count, total = await conn.fetchrow(f"SELECT count(*), sum(v) FROM {table}")
            assert count == 20100
            assert total == (sum(i / 2 for i in range(100))
                             + sum(float(i) for i in range(1000, 21000)))

            # a server-side cursor inside a transaction
            async with conn.transaction():
                seen = [r["id"] async for r in conn.cursor(f"SELECT id FROM {table} ORDER BY id",
                                                           prefetch=500)]
            assert len(seen) == 20100 and seen[:3] == [0, 1, 2]
            await conn.execute(f"DROP TABLE {table}")
        finally:
            await conn.close()

    run(loop_name, main)


def test_asyncpg_listen_notify_and_unix_socket(postgres, loop_name):
    async def main():
        listener = await asyncpg.connect(**dsn(postgres))
        # the second connection goes through the Unix socket directory
        notifier = await asyncpg.connect(host=postgres["sockdir"], port=postgres["port"],
                                         user=postgres["user"], database=postgres["database"])
        try:
            queue: asyncio.Queue = asyncio.Queue()

            def on_notify(conn, pid, channel, payload):
                check_loop(loop_name)
                queue.put_nowait((pid, channel, payload))

            await listener.add_listener("ferro_chan", on_notify)
            notifier_pid = notifier.get_server_pid()
            await notifier.execute("NOTIFY ferro_chan, 'first'")
            for i in range(50):
                await notifier.execute("SELECT pg_notify('ferro_chan', $1)", f"payload {i}")
            got = [await asyncio.wait_for(queue.get(), 10) for _ in range(51)]
            assert got == [(notifier_pid, "ferro_chan", "first")] + [
                (notifier_pid, "ferro_chan", f"payload {i}") for i in range(50)]
            await listener.remove_listener("ferro_chan", on_notify)
        finally:
            await listener.close()
            await notifier.close()

    run(loop_name, main)


def test_asyncpg_pool(postgres, loop_name):
    async def main():
        async with asyncpg.create_pool(**dsn(postgres), min_size=2, max_size=5) as pool:
            async def one(i):
                async with pool.acquire() as conn:
                    pid, value = await conn.fetchrow("SELECT pg_backend_pid(), $1::int * 3 "
                                                     "FROM pg_sleep(0.01)", i)
                    return pid, value

            results = await asyncio.gather(*(one(i) for i in range(100)))
            assert [v for _, v in results] == [3 * i for i in range(100)]
            pids = {pid for pid, _ in results}
            assert 2 <= len(pids) <= 5, pids
            assert await pool.fetchval("SELECT count(*) FROM pg_stat_activity "
                                       "WHERE usename = 'ferro'") >= 2

    run(loop_name, main)


def test_asyncpg_tls(postgres, loop_name):
    """A verified TLS connection (asyncpg upgrades with loop.start_tls after PostgreSQL's
    SSLRequest), queries and COPY through it; sslmode 'disable' stays plain."""
    _, client_ctx = tls_contexts()

    async def main():
        conn = await asyncpg.connect(host="localhost", port=postgres["port"],
                                     user=postgres["user"], database=postgres["database"],
                                     ssl=client_ctx)
        try:
            check_loop(loop_name)
            assert await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            total = await conn.fetchval("SELECT sum(g) FROM generate_series(1, 100000) g")
            assert total == sum(range(1, 100001))
            big = "x" * (4 * 1024 * 1024)
            md5 = await conn.fetchval("SELECT md5($1)", big)
            assert md5 == hashlib.md5(big.encode()).hexdigest()
        finally:
            await conn.close()
        plain = await asyncpg.connect(**dsn(postgres), ssl="disable")
        try:
            assert not await plain.fetchval(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        finally:
            await plain.close()

    run(loop_name, main)


def test_asyncpg_timeout_cancel_and_large_results(postgres, loop_name):
    """A query timeout (asyncpg cancels it on the server through a second connection) leaves
    the connection usable; a 20 MiB result set arrives whole."""

    async def main():
        conn = await asyncpg.connect(**dsn(postgres))
        try:
            check_loop(loop_name)
            with pytest.raises(asyncio.TimeoutError):
                await conn.fetch("SELECT pg_sleep(10)", timeout=0.3)
            assert await conn.fetchval("SELECT 'still usable'") == "still usable"

            rows = await conn.fetch("SELECT g, repeat(chr(65 + g % 26), 1024) AS s "
                                    "FROM generate_series(1, 20000) g")
            assert len(rows) == 20000
            assert all(r["s"] == chr(65 + r["g"] % 26) * 1024 for r in rows)

        finally:
            await conn.close()

    run(loop_name, main)
