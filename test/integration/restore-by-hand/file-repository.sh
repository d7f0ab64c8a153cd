#!/usr/bin/env bash
# docs/runbooks/restore-by-hand.md, steps 1 to 6, for a file:// repository. Every line that does not end in
# "# test" appears word for word in the runbook (restore-by-hand.test.ts checks that), so the runbook cannot drift
# from what this script proves. The test passes REPO, D, W, TS, TARGET, PORT and PGBIN in the environment.
set -euo pipefail                                                                                  # test
export PATH="$PGBIN:$PATH"                                                                         # test

# 1. Find the complete backups
for m in $REPO/backups/*/manifest.json; do grep -E '"(backupId|stopTime|stopLsn|timeline)"' "$m" | tr -d ' \n'; echo; done
ID=$(basename "$(dirname "$(ls $REPO/backups/*/manifest.json | tail -n 1)")")                       # test

# 2. Download the backup and check it
mkdir -p $W && cd $W
cp $REPO/backups/$ID/manifest.json . && for o in $(jq -r '.objects[].name' manifest.json); do cp $REPO/backups/$ID/$o .; done
jq -r '.objects[] | "\(.sha256)  \(.name)"' manifest.json | sha256sum -c -
jq -r '.objects[] | "\(.storedBytes) \(.name)"' manifest.json | while read n f; do [ "$(stat -c %s $f)" = "$n" ] || echo "$f: wrong size"; done

# 3. Check that the WAL is there
grep -E '"(startWal|stopWal)"' manifest.json
ls $REPO/wal/00000001/

# 4. Unpack
install -d -m 700 -o postgres -g postgres $D
chown -R postgres:postgres $W
cd $W && runuser -u postgres -- sh -c "zstd -dc base.tar.zst | tar -x -f - -C $D"
runuser -u postgres -- sh -c "zstd -dc backup_manifest.zst > $D/backup_manifest"
runuser -u postgres -- pg_verifybackup -n -i pg_tblspc -i tablespace_map $D
rm -f $D/standby.signal
jq -r '.objects[] | select(.tablespace) | "\(.name) \(.tablespace.oid) \(.tablespace.location)"' manifest.json |
while read name oid dir; do
  if [ -n "$TS" ]; then dir=$TS/$oid; fi
  install -d -m 700 -o postgres -g postgres "$dir"
  runuser -u postgres -- sh -c "zstd -dc $name | tar -x -f - -C $dir"
  echo "$oid $dir"
done > tablespace_map.new
[ -s tablespace_map.new ] && install -m 600 -o postgres -g postgres tablespace_map.new $D/tablespace_map

# 5. Write the recovery settings (the runbook shows these lines with its example path and time)
sed -i -E '/^[[:space:]]*(restore_command|recovery_target)/d' $D/postgresql.auto.conf
{                                                                                                  # test
  echo "restore_command = 'zstd -d -q -f $REPO/wal/\$(echo %f | cut -c1-8)/%f.zst -o %p'"          # test
  echo "recovery_target_time = '$TARGET'"                                                          # test
  echo "recovery_target_action = 'promote'"                                                        # test
  echo "archive_mode = off"                                                                        # test
  echo "port = $PORT"                                                                              # test
} >> $D/postgresql.auto.conf                                                                       # test
runuser -u postgres -- touch $D/recovery.signal
sync --file-system $D

# 6. Start and watch
runuser -u postgres -- pg_ctl -D $D -l $D/restore.log -w start
grep -E 'restored log file|recovery stopping|selected new timeline|archive recovery complete|FATAL' $D/restore.log
