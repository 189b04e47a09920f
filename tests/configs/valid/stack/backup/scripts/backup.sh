#!/bin/sh
pg_dump "$DATABASE_URL" > /backups/nightly.sql
