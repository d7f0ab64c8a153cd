#!/usr/bin/env bash
# docs/runbooks/restore-by-hand.md, "Files-engine backups and chains" (A to C) and steps 5 and 6, for a file://
# repository. Every line that does not end in "# test" appears word for word in the runbook
# (restore-by-hand.test.ts checks that). The test passes REPO, D, W, TS, ID, TARGET, PORT and PGBIN.
set -euo pipefail                                                                                  # test
export PATH="$PGBIN:$PATH"                                                                         # test
mkdir -p $W && cd $W
cp $REPO/backups/$ID/manifest.json .
for B in $(jq -r '.chain[], .backupId' manifest.json); do
  mkdir -p $W/$B && cp $REPO/backups/$B/* $W/$B/
  (cd $W/$B && jq -r '.objects[] | "\(.sha256)  \(.name)"' manifest.json | sha256sum -c --quiet -) || echo "$B: DAMAGED"
done
tsdir() { if [ "$1" = 0 ]; then echo $D; elif [ -n "$TS" ]; then echo $TS/$1; else jq -r --argjson o $1 '[.objects[] | select(.tablespace.oid == $o)][0].tablespace.location' $W/$ID/manifest.json; fi; }
install -d -m 700 -o postgres -g postgres $D
chown -R postgres:postgres $W
for B in $(jq -r '.chain[], .backupId' $W/$ID/manifest.json); do
  jq -r '.objects[] | select(.content == "files" or .content == "blocks") | "\(.content) \(.name) \(.tablespace.oid // 0)"' $W/$B/manifest.json |
  while read content name oid; do
    dir=$(tsdir $oid) && install -d -m 700 -o postgres -g postgres $dir
    if [ "$content" = files ]; then
      runuser -u postgres -- sh -c "zstd -dc $W/$B/$name | tar -x -f - -C $dir"
    else
      mkdir -p $W/runs && zstd -dc $W/$B/$name | tar -x -f - -C $W/runs
      (cd $W/runs && find . -type f | sed 's|^\./||') | while read m; do
        runuser -u postgres -- dd if=$W/runs/$m of=$dir/${m%@*} bs=8192 seek=${m##*@} conv=notrunc status=none
      done
      rm -rf $W/runs
    fi
  done
done
cd $W/$ID
zstd -dc files.jsonl.zst | jq -r 'select(.type == "file" and (.parts | length) > 1) | "\(.size) \(.tablespace // 0) \(.path)"' |
while read size oid path; do runuser -u postgres -- truncate -s $size $(tsdir $oid)/$path; done
zstd -dc files.jsonl.zst | jq -r '"\(.tablespace // 0) \(.path)"' | LC_ALL=C sort > $W/listed
for oid in 0 $(jq -r '[.objects[] | .tablespace.oid // empty] | unique[]' manifest.json); do
  (cd $(tsdir $oid) && find . -mindepth 1 | sed "s|^\./|$oid |")
done | LC_ALL=C sort > $W/present
LC_ALL=C comm -13 $W/listed $W/present | while read oid path; do rm -rf $(tsdir $oid)/$path; done
runuser -u postgres -- sh -c "zstd -dc backup_label.zst > $D/backup_label"
for oid in $(jq -r '[.objects[] | .tablespace.oid // empty] | unique[]' manifest.json); do echo "$oid $(tsdir $oid)"; done > tablespace_map.new
[ -s tablespace_map.new ] && install -m 600 -o postgres -g postgres tablespace_map.new $D/tablespace_map

# 5. Write the recovery settings
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
