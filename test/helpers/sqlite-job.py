# A job for the migration tests: transactions of 5 rows into DB (each row a
# little apart, so that a move lands inside one); prints "committed <max id>" after each.
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute('create table if not exists t(id integer primary key, v text)')
while True:
    try:
        db.execute('begin immediate')
        for _ in range(5):
            db.execute('insert into t(v) values (?)', ('x' * 200,))
            time.sleep(0.01)
        db.execute('commit')
    except sqlite3.Error as e:  # which operation failed (SQLITE_IOERR_FSYNC, _LOCK, ...) says more than "disk I/O error"
        print('sqlite error:', getattr(e, 'sqlite_errorname', '?'), e, file=sys.stderr, flush=True)
        raise
    print('committed', db.execute('select max(id) from t').fetchone()[0], flush=True)
