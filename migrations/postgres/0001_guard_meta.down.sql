DROP TABLE guard_meta;
