CREATE TABLE `worker_attempts` (
	`consumer` varchar(64) NOT NULL,
	`message_id` varchar(64) NOT NULL,
	`attempts` int unsigned NOT NULL,
	`failed_at` datetime(3) NOT NULL,
	CONSTRAINT `worker_attempts_consumer_message_id_pk` PRIMARY KEY(`consumer`,`message_id`)
);
--> statement-breakpoint
CREATE INDEX `worker_attempts_failed_at_idx` ON `worker_attempts` (`failed_at`);