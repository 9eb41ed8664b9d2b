"""Tests of the national-platform sandbox over real HTTP (issue 12)."""
