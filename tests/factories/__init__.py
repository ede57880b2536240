"""What tests build, shared by more than one test module (a test module never imports another):

simulator   specs for the vCenter simulator (tools/simulator.py)
people      the personas, their password, and clients logged in as them (session, token, browser)
jobs        job rows as the runner leaves them
protection  protection groups over test inventories or a simulator, and the backup lab
recovery    recovery points with real NTFS/ext4 disks in the store, and whole-VM restores
images      the programs tests run to build disk images, and their packages
settings    `manage.py check` under a chosen environment

Inventory rows without a simulator come from tests/inventory/factories.py.
"""
