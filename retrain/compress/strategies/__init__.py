"""The built-in compression strategies (builtin.py names them for the registry); a plug-in
package adds its own through the `driftd.compressors` entry-point group."""
