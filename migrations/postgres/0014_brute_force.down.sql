DROP INDEX login_attempts_ip_time;
DROP TABLE account_lockouts;
DROP TABLE ip_blocks;
