"""The grid the aggregate tables are keyed by, shared by the projection that writes them and
the reports that read them: conversion windows and duration buckets, the hourly rollup
levels, the breakdowns. Pure: no I/O here."""
