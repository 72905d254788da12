#!/bin/sh
# Marquee backup and restore, one step per container (k8s/base/backup.yaml runs the backup steps daily,
# k8s/base/backup/restore-job.yaml the restore steps once). The steps of one pod share /backup.
#
#   backup.sh mongo                mongodump of MONGO_URI's database              (image mongo)
#   backup.sh clickhouse           each MergeTree table of CLICKHOUSE_URL's database:
#                                  its CREATE statement and its rows (Native, gzip)  (image curlimages/curl)
#   backup.sh upload               mc mirror of the media bucket, copy of the dumps under
#                                  dumps/<UTC stamp>/, expiry of dumps older than BACKUP_KEEP_DAYS
#                                                                                  (image minio/mc)
#   backup.sh fetch                the dumps of RESTORE_STAMP into /backup            (image minio/mc)
#   backup.sh restore-mongo        mongorestore --drop of the archive              (image mongo)
#   backup.sh restore-clickhouse   drop, re-create and refill each dumped table    (image curlimages/curl)
#   backup.sh restore-media        mc mirror of the media copy back into S3_BUCKET   (image minio/mc)
#
# Settings (env): MONGO_URI, CLICKHOUSE_URL, S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY, S3_BUCKET as
# the services read them; BACKUP_BUCKET, BACKUP_KEEP_DAYS and, for a backup store other than the
# media S3, BACKUP_S3_ENDPOINT, BACKUP_S3_ACCESS_KEY, BACKUP_S3_SECRET_KEY. POSIX sh: it runs under
# the mongo image's dash, curl's busybox ash and mc's bash alike.
set -eu

step=${1:-}
DUMP=/backup/dump

log() {
	printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$step" "$*" >&2
}

fail() {
	log "$*"
	exit 1
}

# ---- ClickHouse over HTTP: CLICKHOUSE_URL is http(s)://user:password@host:port/database ----

clickhouse_split() {
	: "${CLICKHOUSE_URL:?CLICKHOUSE_URL is not set}"
	scheme=${CLICKHOUSE_URL%%://*}
	rest=${CLICKHOUSE_URL#*://}
	authority=${rest%%/*}
	database=${rest#"$authority"}
	database=${database#/}
	database=${database%%\?*}
	[ -n "$database" ] || database=default
	# curl decodes percent-encoded credentials in the URL itself.
	server="$scheme://$authority/"
}

# clickhouse QUERY [CURL ARGS…]: runs QUERY (sent as the body) in the database, with the URL
# parameters in $settings (e.g. "&enable_http_compression=1"); the answer on stdout.
settings=
clickhouse() {
	query=$1
	shift
	printf '%s' "$query" | curl --fail-with-body --silent --show-error --retry 3 "$@" \
		--data-binary @- "${server}?database=${database}${settings}"
}

clickhouse_tables() {
	clickhouse "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree%' ORDER BY name FORMAT TabSeparated"
}

# ---- S3 through mc: aliases `src` (the media S3) and `dst` (where backups go) ----

mc_aliases() {
	: "${S3_ENDPOINT:?S3_ENDPOINT is not set}"
	: "${S3_ACCESS_KEY:?S3_ACCESS_KEY is not set}"
	: "${S3_SECRET_KEY:?S3_SECRET_KEY is not set}"
	: "${S3_BUCKET:?S3_BUCKET is not set}"
	: "${BACKUP_BUCKET:?BACKUP_BUCKET is not set}"
	# mc keeps its config under $HOME/.mc; the root filesystem is read-only, /tmp is not.
	HOME=/tmp
	export HOME
	mc --quiet alias set src "$S3_ENDPOINT" "$S3_ACCESS_KEY" "$S3_SECRET_KEY" >/dev/null
	mc --quiet alias set dst "${BACKUP_S3_ENDPOINT:-$S3_ENDPOINT}" \
		"${BACKUP_S3_ACCESS_KEY:-$S3_ACCESS_KEY}" "${BACKUP_S3_SECRET_KEY:-$S3_SECRET_KEY}" >/dev/null
}

case "$step" in
mongo)
	: "${MONGO_URI:?MONGO_URI is not set}"
	mkdir -p "$DUMP"
	# MONGO_URI names Marquee's database, so only it is dumped (users and roles are not: the
	# dependencies' init Job or your provider creates them).
	mongodump --uri="$MONGO_URI" --archive="$DUMP/mongo.archive.gz" --gzip
	log "mongo.archive.gz: $(wc -c <"$DUMP/mongo.archive.gz") bytes"
	;;

clickhouse)
	clickhouse_split
	mkdir -p "$DUMP/clickhouse"
	clickhouse_tables >"$DUMP/clickhouse/tables.txt"
	[ -s "$DUMP/clickhouse/tables.txt" ] || fail "no MergeTree tables in database $database"
	while read -r table; do
		clickhouse "SHOW CREATE TABLE \`$table\` FORMAT TabSeparatedRaw" >"$DUMP/clickhouse/$table.sql"
		# Native is ClickHouse's own column format: exact types, fast to read back. The server
		# compresses it (gzip) on the way out; curl stores the bytes as they come.
		settings='&enable_http_compression=1'
		clickhouse "SELECT * FROM \`$table\` FORMAT Native" -H 'Accept-Encoding: gzip' -o "$DUMP/clickhouse/$table.native.gz"
		settings=
		gzip -t "$DUMP/clickhouse/$table.native.gz" || fail "$table: the server did not compress its answer"
		log "$table: $(wc -c <"$DUMP/clickhouse/$table.native.gz") bytes"
	done <"$DUMP/clickhouse/tables.txt"
	;;

upload)
	mc_aliases
	stamp=$(date -u +%Y%m%dT%H%M%SZ)
	mc --quiet mb --ignore-existing "dst/$BACKUP_BUCKET"
	# Media objects are written once under keys that carry their ids, so the copy is one rolling
	# mirror, cheap after the first night. Objects deleted in Marquee stay in it (see
	# docs/kubernetes.md, "Backups", on erasure requests).
	mc --quiet mirror --overwrite "src/$S3_BUCKET" "dst/$BACKUP_BUCKET/media"
	mc --quiet cp --recursive "$DUMP/" "dst/$BACKUP_BUCKET/dumps/$stamp/"
	# Written last: a dump without COMPLETE was cut short and is not one to restore.
	printf '%s\n' "$stamp" | mc --quiet pipe "dst/$BACKUP_BUCKET/dumps/$stamp/COMPLETE"
	log "dumps/$stamp complete"
	# Expiry failing is worth a warning, not a rerun of the whole backup.
	mc --quiet rm --recursive --force --older-than "${BACKUP_KEEP_DAYS:-30}d" "dst/$BACKUP_BUCKET/dumps/" ||
		log "warning: could not expire dumps older than ${BACKUP_KEEP_DAYS:-30} days"
	;;

fetch)
	: "${RESTORE_STAMP:?RESTORE_STAMP is not set: one of the names under dumps/ in the backup bucket}"
	mc_aliases
	mc --quiet stat "dst/$BACKUP_BUCKET/dumps/$RESTORE_STAMP/COMPLETE" >/dev/null ||
		fail "dumps/$RESTORE_STAMP has no COMPLETE marker: pick another dump"
	mkdir -p "$DUMP"
	mc --quiet cp --recursive "dst/$BACKUP_BUCKET/dumps/$RESTORE_STAMP/" "$DUMP/"
	;;

restore-mongo)
	: "${MONGO_URI:?MONGO_URI is not set}"
	# --drop replaces each collection with its dumped state; other collections stay as they are.
	mongorestore --uri="$MONGO_URI" --archive="$DUMP/mongo.archive.gz" --gzip --drop
	;;

restore-clickhouse)
	clickhouse_split
	[ -s "$DUMP/clickhouse/tables.txt" ] || fail "no ClickHouse tables in the dump"
	while read -r table; do
		clickhouse "DROP TABLE IF EXISTS \`$table\`" >/dev/null
		clickhouse "$(cat "$DUMP/clickhouse/$table.sql")" >/dev/null
		curl --fail-with-body --silent --show-error -H 'Content-Encoding: gzip' \
			--data-binary @"$DUMP/clickhouse/$table.native.gz" \
			"${server}?database=${database}&query=INSERT%20INTO%20%60${table}%60%20FORMAT%20Native"
		log "$table: $(clickhouse "SELECT count() FROM \`$table\`") rows"
	done <"$DUMP/clickhouse/tables.txt"
	;;

restore-media)
	mc_aliases
	mc --quiet mb --ignore-existing "src/$S3_BUCKET"
	mc --quiet mirror --overwrite "dst/$BACKUP_BUCKET/media" "src/$S3_BUCKET"
	;;

*)
	fail "usage: backup.sh mongo|clickhouse|upload|fetch|restore-mongo|restore-clickhouse|restore-media"
	;;
esac
