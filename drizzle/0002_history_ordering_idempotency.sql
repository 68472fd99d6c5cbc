CREATE TABLE `email_change_notices` (
	`id` bigint unsigned AUTO_INCREMENT NOT NULL,
	`customer_id` bigint unsigned NOT NULL,
	`event_id` char(36) NOT NULL,
	`recipient` varchar(254) NOT NULL,
	`new_email` varchar(254) NOT NULL,
	`sent_at` datetime(3) NOT NULL,
	CONSTRAINT `email_change_notices_id` PRIMARY KEY(`id`),
	CONSTRAINT `email_change_notices_event_id_uq` UNIQUE(`event_id`)
);
--> statement-breakpoint
CREATE TABLE `handled_events` (
	`position` bigint unsigned NOT NULL,
	`event_id` char(36) NOT NULL,
	`type` varchar(128) NOT NULL,
	`aggregate_type` varchar(64) NOT NULL,
	`aggregate_id` varchar(64) NOT NULL,
	`sequence` int unsigned NOT NULL,
	`occurred_at` datetime(3) NOT NULL,
	`handled_at` datetime(3) NOT NULL,
	`handler` varchar(64) NOT NULL,
	`payload` json NOT NULL,
	CONSTRAINT `handled_events_position` PRIMARY KEY(`position`),
	CONSTRAINT `handled_events_event_id_uq` UNIQUE(`event_id`)
);
--> statement-breakpoint
CREATE TABLE `history_positions` (
	`id` tinyint unsigned NOT NULL,
	`position` bigint unsigned NOT NULL,
	CONSTRAINT `history_positions_id` PRIMARY KEY(`id`)
);
--> statement-breakpoint
CREATE TABLE `idempotency_keys` (
	`key` varchar(128) NOT NULL,
	`operation` varchar(64) NOT NULL,
	`request_hash` char(64) NOT NULL,
	`response` json NOT NULL,
	`created_at` datetime(3) NOT NULL,
	CONSTRAINT `idempotency_keys_key` PRIMARY KEY(`key`)
);
--> statement-breakpoint
CREATE TABLE `worker_progress` (
	`consumer` varchar(64) NOT NULL,
	`aggregate_type` varchar(64) NOT NULL,
	`aggregate_id` varchar(64) NOT NULL,
	`last_sequence` int unsigned NOT NULL,
	CONSTRAINT `worker_progress_consumer_aggregate_type_aggregate_id_pk` PRIMARY KEY(`consumer`,`aggregate_type`,`aggregate_id`)
);
--> statement-breakpoint
DROP INDEX `outbox_aggregate_type_idx` ON `outbox`;--> statement-breakpoint
DROP INDEX `outbox_type_published_idx` ON `outbox`;--> statement-breakpoint
ALTER TABLE `customers` ADD `version` int unsigned DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE `outbox` ADD `held` boolean DEFAULT false NOT NULL;--> statement-breakpoint
CREATE INDEX `handled_events_aggregate_idx` ON `handled_events` (`aggregate_type`,`aggregate_id`,`position`);--> statement-breakpoint
CREATE INDEX `idempotency_keys_created_idx` ON `idempotency_keys` (`created_at`);--> statement-breakpoint
CREATE INDEX `inbox_handled_at_idx` ON `inbox` (`handled_at`);--> statement-breakpoint
CREATE INDEX `outbox_held_idx` ON `outbox` (`held`,`aggregate_type`,`aggregate_id`,`sequence`);--> statement-breakpoint
-- Data of a database migrated from 0001: the workers used to append a CustomerEventHandled event
-- to the customer's own stream; the history table now holds what it told.
UPDATE `customers` c JOIN (SELECT `aggregate_id`, MAX(`sequence`) AS s FROM `outbox` WHERE `aggregate_type` = 'Customer' GROUP BY `aggregate_id`) o ON CAST(o.`aggregate_id` AS UNSIGNED) = c.`id` SET c.`version` = o.s;--> statement-breakpoint
INSERT INTO `handled_events` (`position`, `event_id`, `type`, `aggregate_type`, `aggregate_id`, `sequence`, `occurred_at`, `handled_at`, `handler`, `payload`)
SELECT ROW_NUMBER() OVER (ORDER BY h.`id`), JSON_VALUE(h.`payload`, '$.handledEventId'), JSON_VALUE(h.`payload`, '$.handledEventType'), h.`aggregate_type`, h.`aggregate_id`, COALESCE(e.`sequence`, 1), COALESCE(e.`occurred_at`, h.`occurred_at`), h.`occurred_at`, JSON_VALUE(h.`payload`, '$.handler'), COALESCE(e.`payload`, JSON_EXTRACT(h.`payload`, '$.handledEventPayload'))
FROM `outbox` h LEFT JOIN `outbox` e ON BINARY e.`event_id` = BINARY JSON_VALUE(h.`payload`, '$.handledEventId')
WHERE h.`type` = 'CustomerEventHandled';--> statement-breakpoint
INSERT INTO `history_positions` (`id`, `position`) SELECT 1, COUNT(*) FROM `handled_events`;--> statement-breakpoint
UPDATE `outbox` SET `published_at` = COALESCE(`published_at`, NOW(3)), `dead_at` = NULL WHERE `type` = 'CustomerEventHandled';
