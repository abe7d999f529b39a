/* event_sourcing--1.3--1.4.sql: performance at scale, bulk import */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION event_sourcing UPDATE TO '1.4'" to load this file. \quit
