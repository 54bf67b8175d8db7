"""The package version, in a module of its own so that core modules read it without importing the
package root (which imports the public API and would make every core module depend on all of it)."""

__version__ = "0.1.0"
