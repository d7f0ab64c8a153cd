#!/usr/bin/env bash
# docs/repository-format.md, "Restoring an encrypted backup by hand", for a file:// repository (`cp` where an S3
# repository needs `aws s3 cp`). Every line that does not end in "# test" appears word for word in that section
# (restore-by-hand.test.ts checks it). The test passes REPO, D, W, KEY, TARGET, PORT and PGBIN in the environment.
set -euo pipefail                                                                                  # test
export PATH="$PGBIN:$PATH"                                                                         # test
ID=$(basename "$(dirname "$(ls $REPO/backups/*/manifest.json | tail -n 1)")")                       # test

# 1. Download the backup; check it; check that your key is one of its recipients
mkdir -p $W && cd $W
cp $REPO/backups/$ID/manifest.json . && for o in $(jq -r '.objects[].name' manifest.json); do cp $REPO/backups/$ID/$o .; done
jq -r '.objects[] | "\(.sha256)  \(.name)"' manifest.json | sha256sum -c -
jq -r '.encryption.recipients[]' manifest.json
age-keygen -y $KEY

# 2. Decrypt, decompress, unpack
install -d -m 700 -o postgres -g postgres $D
age -d -i $KEY base.tar.zst | zstd -dc | tar -x -f - -C $D
age -d -i $KEY backup_manifest.zst | zstd -dc > $D/backup_manifest
chown -R postgres:postgres $D
runuser -u postgres -- pg_verifybackup -n $D

# 3. A restore_command that decrypts WAL segments (history files are stored without encryption)
install -m 600 -o postgres -g postgres $KEY $W/key
cat > $W/fetch-wal <<'EOF'
#!/bin/sh
f=$1/wal/$(echo $3 | cut -c1-8)/$3.zst
[ -f "$f" ] || exit 1
if [ "$(head -c 21 "$f")" = "age-encryption.org/v1" ]; then age -d -i "$2" "$f" | zstd -d -q -f -o "$4"; else zstd -d -q -f "$f" -o "$4"; fi
EOF
chmod 755 $W/fetch-wal && chown postgres:postgres $W
{                                                                                                  # test
  echo "restore_command = '$W/fetch-wal $REPO $W/key %f %p'"                                       # test
  echo "recovery_target_time = '$TARGET'"                                                          # test
  echo "recovery_target_action = 'promote'"                                                        # test
  echo "archive_mode = off"                                                                        # test
  echo "port = $PORT"                                                                              # test
} >> $D/postgresql.auto.conf                                                                       # test
runuser -u postgres -- touch $D/recovery.signal
sync --file-system $D

# 4. Start and watch
runuser -u postgres -- pg_ctl -D $D -l $D/restore.log -w start
grep -E 'restored log file|recovery stopping|selected new timeline|archive recovery complete|FATAL' $D/restore.log
