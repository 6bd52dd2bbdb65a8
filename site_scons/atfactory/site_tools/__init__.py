"""The SCons side of atfactory, shipped with the package: the SCons tool ``atfactory_build``.

SCons loads the tool from this folder; the rest of the library never imports SCons::

    import atfactory.site_tools
    env = Environment(tools=["atfactory_build"], toolpath=[atfactory.site_tools.TOOLPATH])
"""
import os

TOOLPATH = os.path.dirname(os.path.abspath(__file__))
