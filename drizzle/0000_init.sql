CREATE TABLE `customers` (
	`id` bigint unsigned AUTO_INCREMENT NOT NULL,
	`email` varchar(254) NOT NULL,
	`email_normalized` varchar(254) NOT NULL,
	`name` varchar(100) NOT NULL,
	`created_at` datetime(3) NOT NULL,
	CONSTRAINT `customers_id` PRIMARY KEY(`id`),
	CONSTRAINT `customers_email_normalized_uq` UNIQUE(`email_normalized`)
);
--> statement-breakpoint
CREATE TABLE `inbox` (
	`consumer` varchar(64) NOT NULL,
	`message_id` varchar(64) NOT NULL,
	`handled_at` datetime(3) NOT NULL,
	CONSTRAINT `inbox_consumer_message_id_pk` PRIMARY KEY(`consumer`,`message_id`)
);
--> statement-breakpoint
CREATE TABLE `outbox` (
	`id` bigint unsigned AUTO_INCREMENT NOT NULL,
	`event_id` char(36) NOT NULL,
	`aggregate_type` varchar(64) NOT NULL,
	`aggregate_id` varchar(64) NOT NULL,
	`sequence` int unsigned NOT NULL,
	`type` varchar(128) NOT NULL,
	`payload` json NOT NULL,
	`headers` json NOT NULL,
	`occurred_at` datetime(3) NOT NULL,
	`attempts` int unsigned NOT NULL DEFAULT 0,
	`next_attempt_at` datetime(3) NOT NULL,
	`lease_owner` varchar(128),
	`lease_token` char(36),
	`lease_expires_at` datetime(3),
	`published_at` datetime(3),
	`dead_at` datetime(3),
	`last_error` varchar(1000),
	CONSTRAINT `outbox_id` PRIMARY KEY(`id`),
	CONSTRAINT `outbox_event_id_uq` UNIQUE(`event_id`),
	CONSTRAINT `outbox_aggregate_sequence_uq` UNIQUE(`aggregate_type`,`aggregate_id`,`sequence`)
);
--> statement-breakpoint
CREATE TABLE `welcome_emails` (
	`id` bigint unsigned AUTO_INCREMENT NOT NULL,
	`customer_id` bigint unsigned NOT NULL,
	`event_id` char(36) NOT NULL,
	`recipient` varchar(254) NOT NULL,
	`subject` varchar(200) NOT NULL,
	`body` varchar(4000) NOT NULL,
	`sent_at` datetime(3) NOT NULL,
	CONSTRAINT `welcome_emails_id` PRIMARY KEY(`id`),
	CONSTRAINT `welcome_emails_event_id_uq` UNIQUE(`event_id`)
);
--> statement-breakpoint
CREATE INDEX `outbox_claim_idx` ON `outbox` (`published_at`,`dead_at`,`next_attempt_at`,`id`);--> statement-breakpoint
CREATE INDEX `outbox_dead_idx` ON `outbox` (`dead_at`);--> statement-breakpoint
CREATE INDEX `outbox_aggregate_type_idx` ON `outbox` (`aggregate_type`,`aggregate_id`,`type`);--> statement-breakpoint
CREATE INDEX `welcome_emails_customer_idx` ON `welcome_emails` (`customer_id`);