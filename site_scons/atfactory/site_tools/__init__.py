"""The SCons side of atfactory, shipped with the package: the SCons tool ``atfactory_build``.

SCons loads the tool from this folder; the rest of the library never imports SCons::

    import atfactory.site_tools
    env = Environment(tools=["atfactory_build"], toolpath=[atfactory.site_tools.TOOLPATH])
    host, registry = env.AtfSession(["plugins"], board_dirs=["boards"])
    env.AtfBuild(host, registry, ["ACME-1"], "build", sign_key="release.key")

``project.SConstruct`` is the SConstruct of atfactory projects, which ``atfactory build`` runs.
"""
import os

TOOLPATH = os.path.dirname(os.path.abspath(__file__))
PROJECT_SCONSTRUCT = os.path.join(TOOLPATH, "project.SConstruct")   # what `atfactory build` runs
