#!/usr/bin/env bash
# Runs a throwaway ClickHouse server in the foreground, for tests and CI.
#
#   scripts/clickhouse-local.sh DIR HTTP_PORT TCP_PORT
#
# Writes DIR/config.xml and DIR/users.xml (user "default", no password, 127.0.0.1 only), keeps
# data, tmp files and logs under DIR, listens on 127.0.0.1 only, opens no interserver port, then
# execs the server (so its pid is this script's pid). Works with Debian's clickhouse-server 18.16
# (`clickhouse-server`) and with newer single-binary installs (`clickhouse server`); running as
# root is fine. Used by test/helpers/servers.ts and .ci/run.
set -euo pipefail

if [ $# -ne 3 ]; then
	echo "usage: $0 DIR HTTP_PORT TCP_PORT" >&2
	exit 2
fi
dir=$(cd "$1" && pwd)
http_port=$2
tcp_port=$3

if command -v clickhouse-server >/dev/null 2>&1; then
	server=(clickhouse-server)
elif [ -x /usr/sbin/clickhouse-server ]; then
	server=(/usr/sbin/clickhouse-server)
elif command -v clickhouse >/dev/null 2>&1; then
	server=(clickhouse server)
else
	echo "clickhouse-server not installed" >&2
	exit 127
fi

mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas" "$dir/log"

cat >"$dir/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
	<logger>
		<level>warning</level>
		<log>$dir/log/clickhouse-server.log</log>
		<errorlog>$dir/log/clickhouse-server.err.log</errorlog>
		<size>10M</size>
		<count>1</count>
	</logger>
	<listen_host>127.0.0.1</listen_host>
	<http_port>$http_port</http_port>
	<tcp_port>$tcp_port</tcp_port>
	<path>$dir/data/</path>
	<tmp_path>$dir/tmp/</tmp_path>
	<user_files_path>$dir/user_files/</user_files_path>
	<format_schema_path>$dir/format_schemas/</format_schema_path>
	<users_config>$dir/users.xml</users_config>
	<default_profile>default</default_profile>
	<default_database>default</default_database>
	<mark_cache_size>268435456</mark_cache_size>
	<uncompressed_cache_size>268435456</uncompressed_cache_size>
	<max_concurrent_queries>100</max_concurrent_queries>
	<mlock_executable>false</mlock_executable>
</yandex>
EOF

cat >"$dir/users.xml" <<EOF
<?xml version="1.0"?>
<yandex>
	<profiles>
		<default>
			<max_memory_usage>2000000000</max_memory_usage>
		</default>
	</profiles>
	<users>
		<default>
			<password></password>
			<networks>
				<ip>127.0.0.1</ip>
				<ip>::1</ip>
			</networks>
			<profile>default</profile>
			<quota>default</quota>
		</default>
	</users>
	<quotas>
		<default></default>
	</quotas>
</yandex>
EOF

cd "$dir"
exec "${server[@]}" --config-file="$dir/config.xml"
