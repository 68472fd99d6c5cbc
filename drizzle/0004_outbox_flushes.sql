CREATE TABLE `outbox_flushes` (
	`slot` smallint unsigned NOT NULL,
	`flushes` bigint unsigned NOT NULL,
	CONSTRAINT `outbox_flushes_slot` PRIMARY KEY(`slot`)
);
