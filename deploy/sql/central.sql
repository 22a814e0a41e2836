-- Central database for deploy/compose.yaml; sitesync creates its own tables on first start.
IF DB_ID('sitesync') IS NULL CREATE DATABASE sitesync;
GO
