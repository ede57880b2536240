// Extensions for instant VM recovery: NAS datastores served from a local directory, registering a
// VM from its .vmx, storage vMotion, removing a datastore. vcsim 0.24.2 uses a NAS spec's localPath
// as a directory relative to its working directory, has no RemoveDatastore, registers a VM with no
// devices (it never reads the .vmx) and its RelocateVM_Task only renames the datastore property.
//
//   - CreateNasDatastore with spec.remoteHost this machine (127.0.0.1, localhost, ::1, its host
//     name or one of its addresses) and spec.remotePath an absolute local directory: the datastore,
//     named spec.localPath as on vSphere, holds that directory's files (summary.url is the
//     directory; the datastore HTTP API reads and writes there). accessMode "readOnly" refuses
//     PUTs. Another remote host, or a missing directory, fails as vSphere's mount does
//     (PlatformConfigFault "NFS mount HOST:PATH failed: ..."); a name taken in the datacenter is
//     DuplicateName.
//   - RemoveDatastore (HostDatastoreSystem): unmounts from that host, and removes the datastore once
//     no host mounts it; ResourceInUse ("The resource 'NAME' is in use.") while a registered VM has
//     files on it. The directory is left as it is.
//   - RegisterVM_Task reads the .vmx: displayName (the name when none is given), numvcpus, memsize,
//     guestOS, firmware, vc.uuid and uuid.bios (kept unless another VM has that instance UUID), SCSI (lsilogic, lsisas1068, pvscsi, buslogic), SATA and NVMe controllers,
//     their disks' fileName (descriptors beside the .vmx; capacity from the descriptor's extents)
//     and ethernetN (virtualDev, networkName when the datacenter has that network, startConnected);
//     its other settings become config.extraConfig (vmxExtraConfig in guest.go).
//     The VM's disks are backed by those files, which are not touched. vcsim's register needs
//     "<name>.nvram" and "vmware.log" beside the .vmx: they are created when missing, as ESXi does.
//   - Destroy_Task of a VM whose .vmx is on a NAS datastore unregisters it and deletes its own files
//     (.vmx, .nvram, vmware.log, disks), not its log directory as vcsim does (which, for a .vmx at
//     the datastore's root, is the whole datastore).
//   - RelocateVM_Task with spec.datastore: storage vMotion. The disks (descriptor and extents, sparse
//     copies), the .vmx and .nvram go to "<target>/<vm name>/" (" (N)" added if taken), the VM's
//     disks and files point there, its datastore list is the target, and the source files are
//     deleted (errors ignored, as on a read-only source). Host, pool and folder in the same spec go
//     to vcsim's own relocate.
package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

const (
	dssExtensionType    = "HostDatastoreSystemExtension"
	folderExtensionType = "FolderExtension"
)

// instantState is shared by the extensions: the in-process client (for calling vcsim's own
// methods with its locking) and the temporary directories made for NAS datastores.
type instantState struct {
	c     *vim25.Client
	mu    sync.Mutex
	links map[types.ManagedObjectReference]string // NAS datastore -> temporary directory
}

var ctxBackground = context.Background()

var instant = &instantState{links: map[types.ManagedObjectReference]string{}}

func (s *instantState) cleanup() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, dir := range s.links {
		_ = os.RemoveAll(dir)
	}
}

// thisTypes match a request's _this of each rerouted type (made once: requests run concurrently).
var thisTypes = map[string]*regexp.Regexp{
	"HostDatastoreSystem": thisPattern("HostDatastoreSystem"),
	"Folder":              thisPattern("Folder"),
	"VirtualMachine":      thisPattern("VirtualMachine"),
}

func thisPattern(kind string) *regexp.Regexp {
	return regexp.MustCompile(`(<(?:[\w.-]+:)?_this\b[^>]*?\btype=")` + kind + `(")`)
}

// instantMethods are the request names that rerouteInstant looks at (a cheap test on the body).
var instantMethods = [][]byte{
	[]byte("CreateNasDatastore"), []byte("RemoveDatastore"), []byte("RegisterVM_Task"), []byte("RelocateVM_Task"),
	[]byte("Destroy_Task"),
}

func wantsInstant(body []byte) bool {
	for _, m := range instantMethods {
		if bytes.Contains(body, m) {
			return true
		}
	}
	return false
}

// rerouteInstant sends the methods above to their extension object (same moref value, another type).
func rerouteInstant(body []byte, tracker *changeTracker) []byte {
	method, err := simulator.UnmarshalBody(types.TypeFunc(), body)
	if err != nil {
		return body
	}
	var ext mo.Reference
	switch req := method.Body.(type) {
	case *types.CreateNasDatastore, *types.RemoveDatastore:
		if method.This.Type != "HostDatastoreSystem" {
			return body
		}
		ref := types.ManagedObjectReference{Type: dssExtensionType, Value: method.This.Value}
		ext = &dssExtension{ExtensibleManagedObject: mo.ExtensibleManagedObject{Self: ref}, self: ref}
	case *types.RegisterVM_Task:
		if method.This.Type != "Folder" {
			return body
		}
		ref := types.ManagedObjectReference{Type: folderExtensionType, Value: method.This.Value}
		ext = &folderExtension{ExtensibleManagedObject: mo.ExtensibleManagedObject{Self: ref}, self: ref}
	case *types.RelocateVM_Task:
		if method.This.Type != "VirtualMachine" || req.Spec.Datastore == nil {
			return body
		}
		ref := types.ManagedObjectReference{Type: extensionType, Value: method.This.Value}
		ext = &vmExtension{ExtensibleManagedObject: mo.ExtensibleManagedObject{Self: ref}, self: ref, tracker: tracker}
	case *types.Destroy_Task:
		if method.This.Type != "VirtualMachine" || !onNAS(method.This) {
			return body
		}
		ref := types.ManagedObjectReference{Type: extensionType, Value: method.This.Value}
		ext = &vmExtension{ExtensibleManagedObject: mo.ExtensibleManagedObject{Self: ref}, self: ref, tracker: tracker}
	default:
		return body
	}
	if simulator.Map.Get(method.This) == nil {
		return body // vcsim answers ManagedObjectNotFound
	}
	if simulator.Map.Get(ext.Reference()) == nil {
		simulator.Map.Put(ext)
	}
	return thisTypes[method.This.Type].ReplaceAll(body, []byte("${1}"+ext.Reference().Type+"${2}"))
}

// ---- NAS datastores ----

type dssExtension struct {
	mo.ExtensibleManagedObject // first: see vmExtension
	self                       types.ManagedObjectReference
}

func (x *dssExtension) Reference() types.ManagedObjectReference { return x.self }

func (x *dssExtension) system() (*simulator.HostDatastoreSystem, bool) {
	ref := types.ManagedObjectReference{Type: "HostDatastoreSystem", Value: x.self.Value}
	dss, ok := simulator.Map.Get(ref).(*simulator.HostDatastoreSystem)
	return dss, ok
}

// isThisMachine tells whether host names this machine.
func isThisMachine(host string) bool {
	host = strings.Trim(strings.ToLower(host), "[]")
	switch host {
	case "127.0.0.1", "localhost", "::1", "localhost.localdomain":
		return true
	}
	if name, err := os.Hostname(); err == nil && strings.EqualFold(name, host) {
		return true
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.IsLoopback() {
			return true
		}
		addrs, _ := net.InterfaceAddrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
				return true
			}
		}
	}
	return false
}

func datacenterOf(ref types.ManagedObjectReference) *simulator.Datacenter {
	for i := 0; i < 64; i++ {
		obj := simulator.Map.Get(ref)
		if dc, ok := obj.(*simulator.Datacenter); ok {
			return dc
		}
		e, ok := obj.(mo.Entity)
		if !ok || e.Entity().Parent == nil {
			return nil
		}
		ref = *e.Entity().Parent
	}
	return nil
}

func (x *dssExtension) CreateNasDatastore(ctx *simulator.Context, req *types.CreateNasDatastore) soap.HasFault {
	body := new(methods.CreateNasDatastoreBody)
	dss, ok := x.system()
	if !ok {
		body.Fault_ = simulator.Fault("", &types.ManagedObjectNotFound{Obj: req.This})
		return body
	}
	spec := req.Spec
	remote := spec.RemoteHost
	if remote == "" && len(spec.RemoteHostNames) > 0 {
		remote = spec.RemoteHostNames[0]
	}
	mountFailed := func(why string) soap.HasFault {
		msg := fmt.Sprintf("NFS mount %s:%s failed: %s", remote, spec.RemotePath, why)
		body.Fault_ = simulator.Fault(msg, &types.PlatformConfigFault{Text: msg})
		return body
	}
	if !isThisMachine(remote) {
		return mountFailed("Unable to connect to NFS server.")
	}
	if info, err := os.Stat(spec.RemotePath); !filepath.IsAbs(spec.RemotePath) || err != nil || !info.IsDir() {
		return mountFailed("The mount request was denied by the NFS server. Check that the export exists and that the client is permitted to mount it.")
	}
	if spec.LocalPath == "" {
		body.Fault_ = simulator.Fault("", &types.InvalidArgument{InvalidProperty: "spec.localPath"})
		return body
	}
	if dc := datacenterOf(dss.Host.Self); dc != nil {
		if e := simulator.Map.FindByName(spec.LocalPath, dc.Datastore); e != nil {
			msg := fmt.Sprintf("The name '%s' already exists.", spec.LocalPath)
			body.Fault_ = simulator.Fault(msg, &types.DuplicateName{Name: spec.LocalPath, Object: e.Reference()})
			return body
		}
	}
	// vcsim names the datastore path.Base(localPath) and serves localPath: give it a symlink named
	// as the datastore, pointing at the directory, then point the datastore at the directory.
	tmp, err := os.MkdirTemp("", "vcsim-nas-")
	if err != nil {
		return mountFailed(err.Error())
	}
	link := filepath.Join(tmp, escapeName(spec.LocalPath))
	if err := os.Symlink(filepath.Clean(spec.RemotePath), link); err != nil {
		_ = os.RemoveAll(tmp)
		return mountFailed(err.Error())
	}
	stock := *req
	stock.Spec.LocalPath = link
	var res soap.HasFault
	simulator.Map.WithLock(dss, func() { res = dss.CreateNasDatastore(ctx, &stock) })
	if res.Fault() != nil {
		_ = os.RemoveAll(tmp)
		return res
	}
	ref := res.(*methods.CreateNasDatastoreBody).Res.Returnval
	ds := simulator.Map.Get(ref).(*simulator.Datastore)
	dir := filepath.Clean(spec.RemotePath)
	fsType := spec.Type
	if fsType == "" {
		fsType = string(types.HostFileSystemVolumeFileSystemTypeNFS)
	}
	access := spec.AccessMode
	if access == "" {
		access = string(types.HostMountModeReadWrite)
	}
	var info *types.NasDatastoreInfo
	var summary types.DatastoreSummary
	var mounts []types.DatastoreHostMount
	simulator.Map.WithLock(ds, func() {
		info = ds.Info.(*types.NasDatastoreInfo)
		info.Url = dir
		info.Name = escapeName(spec.LocalPath)
		info.Nas.Name = spec.LocalPath
		info.Nas.Type = fsType
		info.Nas.RemoteHost = remote
		info.Nas.RemotePath = spec.RemotePath
		info.Nas.RemoteHostNames = spec.RemoteHostNames
		summary = ds.Summary
		summary.Url = dir
		summary.Type = fsType
		mounts = append(append(mounts, ds.Host...), types.DatastoreHostMount{
			Key: dss.Host.Self,
			MountInfo: types.HostMountInfo{
				Path:       "/vmfs/volumes/" + ref.Value,
				AccessMode: access,
				Mounted:    types.NewBool(true),
				Accessible: types.NewBool(true),
			},
		})
	})
	simulator.Map.Update(ds, []types.PropertyChange{
		{Name: "info", Val: info}, {Name: "summary", Val: summary}, {Name: "host", Val: mounts},
	})
	instant.mu.Lock()
	instant.links[ref] = tmp
	instant.mu.Unlock()
	return res
}

func (x *dssExtension) RemoveDatastore(ctx *simulator.Context, req *types.RemoveDatastore) soap.HasFault {
	body := new(methods.RemoveDatastoreBody)
	dss, ok := x.system()
	if !ok {
		body.Fault_ = simulator.Fault("", &types.ManagedObjectNotFound{Obj: req.This})
		return body
	}
	ds, ok := simulator.Map.Get(req.Datastore).(*simulator.Datastore)
	if !ok || simulator.FindReference(dss.Datastore, req.Datastore) == nil {
		body.Fault_ = simulator.Fault("The object or item referred to could not be found.", &types.NotFound{})
		return body
	}
	var inUse bool
	var mounts []types.DatastoreHostMount
	simulator.Map.WithLock(ds, func() {
		inUse = len(ds.Vm) > 0
		for _, m := range ds.Host {
			if m.Key != dss.Host.Self {
				mounts = append(mounts, m)
			}
		}
	})
	if inUse {
		msg := fmt.Sprintf("The resource '%s' is in use.", ds.Name)
		body.Fault_ = simulator.Fault(msg, &types.ResourceInUse{Type: "Datastore", Name: ds.Name})
		return body
	}
	host := dss.Host.Self
	simulator.Map.WithLock(dss, func() {
		simulator.RemoveReference(&dss.Datastore, ds.Self)
		dss.Host.Datastore = dss.Datastore
	})
	if h, ok := simulator.Map.Get(host).(*simulator.HostSystem); ok {
		simulator.Map.Update(h, []types.PropertyChange{{Name: "datastore", Val: without(h.Datastore, ds.Self)}})
		if h.Parent != nil {
			removeFromField(*h.Parent, "Datastore", ds.Self)
		}
	}
	if len(mounts) > 0 {
		simulator.Map.Update(ds, []types.PropertyChange{{Name: "host", Val: mounts}})
	} else {
		if dc := datacenterOf(host); dc != nil {
			removeFromField(dc.Self, "Datastore", ds.Self)
		}
		if ds.Parent != nil {
			removeFromField(*ds.Parent, "ChildEntity", ds.Self)
		}
		simulator.Map.Remove(ds.Browser)
		simulator.Map.Remove(ds.Self)
		instant.mu.Lock()
		if tmp, ok := instant.links[ds.Self]; ok {
			_ = os.RemoveAll(tmp)
			delete(instant.links, ds.Self)
		}
		instant.mu.Unlock()
	}
	body.Res = new(types.RemoveDatastoreResponse)
	return body
}

func without(refs []types.ManagedObjectReference, ref types.ManagedObjectReference) []types.ManagedObjectReference {
	out := make([]types.ManagedObjectReference, 0, len(refs))
	for _, r := range refs {
		if r != ref {
			out = append(out, r)
		}
	}
	return out
}

// removeFromField drops ref from obj's []ManagedObjectReference field (a promoted field is fine),
// through Map.Update so that property collectors see it.
func removeFromField(objRef types.ManagedObjectReference, field string, ref types.ManagedObjectReference) {
	obj := simulator.Map.Get(objRef)
	if obj == nil {
		return
	}
	v := reflect.ValueOf(obj).Elem().FieldByName(field)
	if !v.IsValid() {
		return
	}
	refs, ok := v.Interface().([]types.ManagedObjectReference)
	if !ok {
		return
	}
	name := strings.ToLower(field[:1]) + field[1:]
	simulator.Map.Update(obj, []types.PropertyChange{{Name: name, Val: without(refs, ref)}})
}

// datastoreDir returns a datastore's local directory, by name in the datacenter that holds ref.
func datastoreDir(ref types.ManagedObjectReference, name string) (*simulator.Datastore, bool) {
	dc := datacenterOf(ref)
	if dc == nil {
		return nil, false
	}
	ds, ok := simulator.Map.FindByName(name, dc.Datastore).(*simulator.Datastore)
	return ds, ok
}

func datastoreURL(ds *simulator.Datastore) string {
	var url string
	simulator.Map.WithLock(ds, func() { url = ds.Info.GetDatastoreInfo().Url })
	return url
}

// readOnlyMount tells whether every host mounts ds read-only (PUTs are then refused).
func readOnlyMount(ds *simulator.Datastore) bool {
	readOnly := false
	simulator.Map.WithLock(ds, func() {
		for _, m := range ds.Host {
			if m.MountInfo.AccessMode != string(types.HostMountModeReadOnly) {
				readOnly = false
				return
			}
			readOnly = true
		}
	})
	return readOnly
}

// ---- RegisterVM from the .vmx ----

type folderExtension struct {
	mo.ExtensibleManagedObject // first: see vmExtension
	self                       types.ManagedObjectReference
}

func (x *folderExtension) Reference() types.ManagedObjectReference { return x.self }

// parseVMX reads "key = "value"" lines; keys are case-insensitive (lowered), values unquoted with
// the vmx escapes "|22" and "|7C" undone.
func parseVMX(data []byte) map[string]string {
	out := map[string]string{}
	scanner := bufio.NewScanner(bytes.NewReader(data))
	scanner.Buffer(make([]byte, 64*1024), 1<<20)
	unescape := strings.NewReplacer("|22", `"`, "|7C", "|", "|7c", "|")
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.IndexByte(line, '=')
		if i < 0 {
			continue
		}
		key := strings.ToLower(strings.TrimSpace(line[:i]))
		value := strings.TrimSpace(line[i+1:])
		value = strings.TrimSuffix(strings.TrimPrefix(value, `"`), `"`)
		out[key] = unescape.Replace(value)
	}
	return out
}

var extentLine = regexp.MustCompile(`(?m)^\s*(?:RW|RDONLY|NOACCESS)\s+(\d+)\s+\w+\s+"([^"]+)"`)

// descriptorExtents returns a descriptor's extent files and the disk's capacity in bytes.
func descriptorExtents(data []byte) ([]string, int64) {
	var files []string
	var sectors int64
	for _, m := range extentLine.FindAllSubmatch(data, -1) {
		n, _ := strconv.ParseInt(string(m[1]), 10, 64)
		sectors += n
		files = append(files, string(m[2]))
	}
	return files, sectors * 512
}

func truthy(v string) bool {
	switch strings.ToLower(v) {
	case "true", "yes", "1", "on":
		return true
	}
	return false
}

// vmxDevices turns the .vmx's controllers, disks and NICs into an add spec; disks are "[ds] dir/file".
func vmxDevices(vmx map[string]string, dsName, dir, localDir string, dc *simulator.Datacenter) []types.BaseVirtualDeviceConfigSpec {
	var devices object.VirtualDeviceList
	controllers := map[string]int32{} // "scsi0" -> key
	var prefixes []string
	for key := range vmx {
		if strings.HasSuffix(key, ".present") && truthy(vmx[key]) {
			prefixes = append(prefixes, strings.TrimSuffix(key, ".present"))
		}
	}
	sort.Strings(prefixes)
	controllerPattern := regexp.MustCompile(`^(scsi|sata|nvme)(\d+)$`)
	diskPattern := regexp.MustCompile(`^(scsi|sata|nvme)(\d+):(\d+)$`)
	nicPattern := regexp.MustCompile(`^ethernet(\d+)$`)
	nextKey := map[string]int32{"scsi": 1000, "sata": 15000, "nvme": 31000}
	for _, p := range prefixes {
		m := controllerPattern.FindStringSubmatch(p)
		if m == nil {
			continue
		}
		bus, _ := strconv.Atoi(m[2])
		var ctrl types.BaseVirtualDevice
		switch m[1] {
		case "scsi":
			kind := map[string]string{"lsilogic": "lsilogic", "lsisas1068": "lsilogic-sas", "pvscsi": "pvscsi", "buslogic": "buslogic"}[vmx[p+".virtualdev"]]
			if kind == "" {
				kind = "lsilogic"
			}
			c, err := devices.CreateSCSIController(kind)
			if err != nil {
				continue
			}
			c.(types.BaseVirtualSCSIController).GetVirtualSCSIController().BusNumber = int32(bus)
			ctrl = c
		case "sata":
			ctrl = &types.VirtualAHCIController{VirtualSATAController: types.VirtualSATAController{VirtualController: types.VirtualController{BusNumber: int32(bus)}}}
		case "nvme":
			ctrl = &types.VirtualNVMEController{VirtualController: types.VirtualController{BusNumber: int32(bus)}}
		}
		key := nextKey[m[1]] + int32(bus)
		ctrl.GetVirtualDevice().Key = key
		controllers[p] = key
		devices = append(devices, ctrl)
	}
	diskKey := int32(2000)
	for _, p := range prefixes {
		m := diskPattern.FindStringSubmatch(p)
		if m == nil {
			continue
		}
		file := vmx[p+".filename"]
		if file == "" || !strings.HasSuffix(strings.ToLower(file), ".vmdk") || strings.Contains(vmx[p+".devicetype"], "cdrom") {
			continue
		}
		ctrlKey, ok := controllers[m[1]+m[2]]
		if !ok {
			continue
		}
		unit, _ := strconv.Atoi(m[3])
		u := int32(unit)
		fileName := "[" + dsName + "] " + path.Join(dir, file)
		local := filepath.Join(localDir, file)
		if filepath.IsAbs(file) || strings.HasPrefix(file, "[") {
			continue // another datastore's disk: not for this simulator
		}
		var capacity int64
		if data, err := os.ReadFile(local); err == nil {
			_, capacity = descriptorExtents(data)
		}
		if capacity == 0 {
			if info, err := os.Stat(strings.TrimSuffix(local, ".vmdk") + "-flat.vmdk"); err == nil {
				capacity = info.Size()
			}
		}
		disk := &types.VirtualDisk{
			VirtualDevice: types.VirtualDevice{
				Key:           diskKey,
				ControllerKey: ctrlKey,
				UnitNumber:    &u,
				Backing: &types.VirtualDiskFlatVer2BackingInfo{
					VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{FileName: fileName},
					DiskMode:                     string(types.VirtualDiskModePersistent),
					ThinProvisioned:              types.NewBool(true),
				},
			},
			CapacityInKB:    capacity / 1024,
			CapacityInBytes: capacity,
		}
		diskKey++
		devices = append(devices, disk)
	}
	for _, p := range prefixes {
		m := nicPattern.FindStringSubmatch(p)
		if m == nil {
			continue
		}
		network := vmx[p+".networkname"]
		if network == "" || dc == nil || simulator.Map.FindByName(network, dc.Network) == nil {
			continue // vSphere keeps such a NIC unconnected; vcsim refuses an unknown network
		}
		kind := vmx[p+".virtualdev"]
		if kind == "" {
			kind = "vmxnet3"
		}
		backing := &types.VirtualEthernetCardNetworkBackingInfo{
			VirtualDeviceDeviceBackingInfo: types.VirtualDeviceDeviceBackingInfo{DeviceName: network},
		}
		nic, err := devices.CreateEthernetCard(kind, backing)
		if err != nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		nic.GetVirtualDevice().Key = int32(4000 + n)
		nic.GetVirtualDevice().Connectable = &types.VirtualDeviceConnectInfo{
			StartConnected: truthy(vmx[p+".startconnected"]), AllowGuestControl: true,
		}
		if vmx[p+".addresstype"] == "static" && vmx[p+".address"] != "" {
			card := nic.(types.BaseVirtualEthernetCard).GetVirtualEthernetCard()
			card.AddressType, card.MacAddress = string(types.VirtualEthernetCardMacTypeManual), vmx[p+".address"]
		}
		devices = append(devices, nic)
	}
	specs, _ := devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd)
	for _, spec := range specs {
		spec.GetVirtualDeviceConfigSpec().FileOperation = "" // attach the existing files
	}
	return specs
}

func (x *folderExtension) RegisterVMTask(ctx *simulator.Context, req *types.RegisterVM_Task) soap.HasFault {
	folderRef := types.ManagedObjectReference{Type: "Folder", Value: x.self.Value}
	folder, ok := simulator.Map.Get(folderRef).(*simulator.Folder)
	body := new(methods.RegisterVM_TaskBody)
	if !ok {
		body.Fault_ = simulator.Fault("", &types.ManagedObjectNotFound{Obj: folderRef})
		return body
	}
	task := simulator.CreateTask(folder, "registerVm", func(t *simulator.Task) (types.AnyType, types.BaseMethodFault) {
		return registerFromVMX(folder, req)
	})
	body.Res = &types.RegisterVM_TaskResponse{Returnval: task.Run()}
	return body
}

func methodFault(err error) types.BaseMethodFault {
	if soap.IsSoapFault(err) {
		if f, ok := soap.ToSoapFault(err).VimFault().(types.BaseMethodFault); ok {
			return f
		}
	}
	if soap.IsVimFault(err) {
		if f, ok := soap.ToVimFault(err).(types.BaseMethodFault); ok {
			return f
		}
	}
	return &types.SystemError{Reason: err.Error()}
}

func registerFromVMX(folder *simulator.Folder, req *types.RegisterVM_Task) (types.AnyType, types.BaseMethodFault) {
	var p object.DatastorePath
	if !p.FromString(req.Path) || p.Path == "" {
		return nil, &types.InvalidArgument{InvalidProperty: "path"}
	}
	ds, ok := datastoreDir(folder.Self, p.Datastore)
	if !ok {
		return nil, &types.NotFound{}
	}
	localDir := datastoreURL(ds)
	vmxFile := filepath.Join(localDir, filepath.FromSlash(p.Path))
	data, err := os.ReadFile(vmxFile)
	if err != nil {
		return nil, &types.NotFound{}
	}
	vmx := parseVMX(data)
	name := req.Name // as vCenter stores it (escaped) when given
	if name == "" {
		name = escapeName(vmx["displayname"])
	}
	if name == "" {
		name = escapeName(strings.TrimSuffix(path.Base(p.Path), ".vmx"))
	}
	for _, e := range simulator.Map.All("VirtualMachine") {
		if vm, ok := e.(*simulator.VirtualMachine); ok && registeredAt(vm, req.Path) {
			return nil, &types.AlreadyExists{Name: vm.Self.Value}
		}
	}
	// vcsim's register opens these; ESXi creates them at power-on (only those made here are
	// removed if registering fails).
	var made []string
	defer func() {
		for _, f := range made {
			_ = os.Remove(f)
		}
	}()
	for _, f := range []string{filepath.Join(filepath.Dir(vmxFile), name+".nvram"), filepath.Join(filepath.Dir(vmxFile), "vmware.log")} {
		if fh, err := os.OpenFile(f, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
			_ = fh.Close()
			made = append(made, f)
		}
	}
	c := instant.c
	var pool *object.ResourcePool
	if req.Pool != nil {
		pool = object.NewResourcePool(c, *req.Pool)
	}
	var host *object.HostSystem
	if req.Host != nil {
		host = object.NewHostSystem(c, *req.Host)
	}
	// vcsim takes path.Dir of the .vmx's datastore path as the log directory: "." for a .vmx at the
	// datastore's root, which it then refuses; "./" avoids that, and the path is put back after.
	stockPath := req.Path
	if !strings.Contains(p.Path, "/") {
		stockPath = "[" + p.Datastore + "] ./" + p.Path
	}
	res, fault := waitFault(object.NewFolder(c, folder.Self).RegisterVM(ctxBackground, stockPath, name, req.AsTemplate, pool, host))
	if fault != nil {
		return nil, fault
	}
	ref := res.(types.ManagedObjectReference)
	if stockPath != req.Path {
		if vm, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine); ok {
			var files types.VirtualMachineFileInfo
			simulator.Map.WithLock(vm, func() { files = vm.Config.Files })
			home := "[" + p.Datastore + "] "
			files.VmPathName = req.Path
			files.LogDirectory, files.SnapshotDirectory, files.SuspendDirectory = home, home, home
			simulator.Map.Update(vm, []types.PropertyChange{
				{Name: "config.files", Val: files},
				{Name: "summary.config.vmPathName", Val: req.Path},
			})
		}
	}
	spec := types.VirtualMachineConfigSpec{
		GuestId:      guestID(vmx["guestos"]),
		DeviceChange: vmxDevices(vmx, p.Datastore, path.Dir(p.Path), filepath.Dir(vmxFile), datacenterOf(folder.Self)),
		ExtraConfig:  vmxExtraConfig(data), // the .vmx's other settings, as vCenter shows them (guest.go)
	}
	if n, err := strconv.Atoi(vmx["numvcpus"]); err == nil && n > 0 {
		spec.NumCPUs = int32(n)
	}
	if n, err := strconv.ParseInt(vmx["memsize"], 10, 64); err == nil && n > 0 {
		spec.MemoryMB = n
	}
	if n, err := strconv.Atoi(vmx["cpuid.corespersocket"]); err == nil && n > 0 {
		spec.NumCoresPerSocket = int32(n)
	}
	if vmx["firmware"] != "" {
		spec.Firmware = vmx["firmware"]
	}
	// As vCenter does: the .vmx's identity is kept unless another VM has it already (a copy gets new ones).
	if id := vmxUUID(vmx["vc.uuid"]); id != "" && !instanceUUIDInUse(id, ref) {
		spec.InstanceUuid = id
	}
	if id := vmxUUID(vmx["uuid.bios"]); id != "" {
		spec.Uuid = id
	}
	vm := object.NewVirtualMachine(c, ref)
	if _, fault := waitFault(vm.Reconfigure(ctxBackground, spec)); fault != nil {
		_ = vm.Unregister(ctxBackground)
		return nil, fault
	}
	made = nil // registered: they are the VM's now
	return ref, nil
}

// vmxUUID turns a .vmx uuid ("42 1c 6f 3e 8a 1b 4c 2d-9e 8f 7a 6b 5c 4d 3e 2f") into vSphere's
// form, "" when it is none.
func vmxUUID(value string) string {
	h := strings.ToLower(strings.NewReplacer(" ", "", "-", "").Replace(value))
	if len(h) != 32 || strings.Trim(h, "0123456789abcdef") != "" {
		return ""
	}
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func instanceUUIDInUse(id string, self types.ManagedObjectReference) bool {
	for _, entity := range simulator.Map.All("VirtualMachine") {
		vm, ok := entity.(*simulator.VirtualMachine)
		if !ok || vm.Self == self {
			continue
		}
		inUse := false
		simulator.Map.WithLock(vm, func() { inUse = vm.Config != nil && strings.EqualFold(vm.Config.InstanceUuid, id) })
		if inUse {
			return true
		}
	}
	return false
}

// vmxGuests maps a few of the .vmx's guestOS values to vSphere's guest ids.
var vmxGuests = map[string]string{
	"other": "otherGuest", "other-64": "otherGuest64", "otherlinux": "otherLinuxGuest",
	"otherlinux-64": "otherLinux64Guest", "other3xlinux-64": "other3xLinux64Guest",
	"other4xlinux-64": "other4xLinux64Guest", "ubuntu": "ubuntuGuest", "ubuntu-64": "ubuntu64Guest",
	"debian10-64": "debian10_64Guest", "debian11-64": "debian11_64Guest", "rhel8-64": "rhel8_64Guest",
	"rhel9-64": "rhel9_64Guest", "centos8-64": "centos8_64Guest", "windows9-64": "windows9_64Guest",
	"windows9srv-64": "windows9Server64Guest", "windows2019srv-64": "windows2019srv_64Guest",
}

// guestID is the vSphere guest id of a .vmx guestOS (which may already be one), "" when unknown
// (vcsim refuses unknown ids; vSphere would show "Other").
func guestID(guestOS string) string {
	if id, ok := vmxGuests[strings.ToLower(guestOS)]; ok {
		return id
	}
	for _, id := range simulator.GuestID {
		if strings.EqualFold(string(id), guestOS) {
			return string(id)
		}
	}
	return ""
}

func registeredAt(vm *simulator.VirtualMachine, vmx string) bool {
	var at string
	simulator.Map.WithLock(vm, func() {
		if vm.Config != nil {
			at = vm.Config.Files.VmPathName
		}
	})
	norm := func(s string) string { return strings.Replace(s, "] ./", "] ", 1) }
	return at != "" && norm(at) == norm(vmx)
}

// waitFault is wait for in-process calls from a task: the result, or the task's fault.
func waitFault(task *object.Task, err error) (types.AnyType, types.BaseMethodFault) {
	if err != nil {
		return nil, methodFault(err)
	}
	t := simulator.Map.Get(task.Reference()).(*simulator.Task)
	simulator.Map.Remove(task.Reference())
	if t.Info.Error != nil {
		return nil, t.Info.Error.Fault
	}
	return t.Info.Result, nil
}

// ---- Destroy_Task of a VM on a NAS datastore ----

// onNAS tells whether the VM's .vmx is on a NAS datastore.
func onNAS(ref types.ManagedObjectReference) bool {
	vm, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	if !ok {
		return false
	}
	var vmx string
	simulator.Map.WithLock(vm, func() {
		if vm.Config != nil {
			vmx = vm.Config.Files.VmPathName
		}
	})
	var p object.DatastorePath
	if !p.FromString(vmx) {
		return false
	}
	ds, ok := datastoreDir(ref, p.Datastore)
	if !ok {
		return false
	}
	nas := false
	simulator.Map.WithLock(ds, func() { _, nas = ds.Info.(*types.NasDatastoreInfo) })
	return nas
}

// DestroyTask unregisters a VM on a NAS datastore and deletes its own files (.vmx, .nvram,
// vmware.log, its disks' descriptors and extents), as vSphere does; vcsim's would delete the VM's
// log directory, which for a .vmx at the datastore's root is the whole datastore.
func (x *vmExtension) DestroyTask(ctx *simulator.Context, req *types.Destroy_Task) soap.HasFault {
	body := new(methods.Destroy_TaskBody)
	vm, ok := simulator.Map.Get(x.vm()).(*simulator.VirtualMachine)
	if !ok {
		body.Fault_ = simulator.Fault("", &types.ManagedObjectNotFound{Obj: x.vm()})
		return body
	}
	task := simulator.CreateTask(vm, "destroy", func(t *simulator.Task) (types.AnyType, types.BaseMethodFault) {
		var files []string
		var name string
		simulator.Map.WithLock(vm, func() {
			name = vm.Name
			files = append(files, vm.Config.Files.VmPathName)
			for _, d := range vm.Config.Hardware.Device {
				if disk, ok := d.(*types.VirtualDisk); ok {
					if b, ok := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
						files = append(files, b.GetVirtualDeviceFileBackingInfo().FileName)
					}
				}
			}
		})
		// Resolved while the VM is registered: its datacenter is found through it.
		var doomed []string
		for i, f := range files {
			var p object.DatastorePath
			if !p.FromString(f) {
				continue
			}
			ds, ok := datastoreDir(vm.Self, p.Datastore)
			if !ok {
				continue
			}
			local := filepath.Join(datastoreURL(ds), filepath.FromSlash(p.Path))
			doomed = append(doomed, local)
			if i == 0 { // the .vmx: its companions
				doomed = append(doomed, filepath.Join(filepath.Dir(local), name+".nvram"), filepath.Join(filepath.Dir(local), "vmware.log"))
			} else if data, err := os.ReadFile(local); err == nil {
				extents, _ := descriptorExtents(data)
				for _, e := range extents {
					doomed = append(doomed, filepath.Join(filepath.Dir(local), e))
				}
			}
		}
		if err := object.NewVirtualMachine(instant.c, vm.Self).Unregister(ctxBackground); err != nil {
			return nil, methodFault(err)
		}
		for _, d := range doomed {
			_ = os.Remove(d) // a read-only datastore keeps them
		}
		return nil, nil
	})
	body.Res = &types.Destroy_TaskResponse{Returnval: task.Run()}
	return body
}

// ---- storage vMotion ----

// RelocateVMTask is reached for specs with a datastore (see rerouteInstant).
func (x *vmExtension) RelocateVMTask(ctx *simulator.Context, req *types.RelocateVM_Task) soap.HasFault {
	body := new(methods.RelocateVM_TaskBody)
	vm, ok := simulator.Map.Get(x.vm()).(*simulator.VirtualMachine)
	if !ok {
		body.Fault_ = simulator.Fault("", &types.ManagedObjectNotFound{Obj: x.vm()})
		return body
	}
	task := simulator.CreateTask(vm, "relocateVm", func(t *simulator.Task) (types.AnyType, types.BaseMethodFault) {
		if fault := moveStorage(ctx, vm, *req.Spec.Datastore); fault != nil {
			return nil, fault
		}
		rest := req.Spec
		rest.Datastore, rest.Disk = nil, nil
		if rest.Host != nil || rest.Pool != nil || rest.Folder != nil {
			return waitFault(object.NewVirtualMachine(instant.c, vm.Self).Relocate(ctxBackground, rest, req.Priority))
		}
		return nil, nil
	})
	body.Res = &types.RelocateVM_TaskResponse{Returnval: task.Run()}
	return body
}

func moveStorage(ctx *simulator.Context, vm *simulator.VirtualMachine, target types.ManagedObjectReference) types.BaseMethodFault {
	dst, ok := simulator.Map.Get(target).(*simulator.Datastore)
	if !ok {
		return &types.InvalidArgument{InvalidProperty: "spec.datastore"}
	}
	var name string
	var files types.VirtualMachineFileInfo
	var devices []types.BaseVirtualDevice
	var old []types.ManagedObjectReference
	simulator.Map.WithLock(vm, func() {
		name, files, old = vm.Name, vm.Config.Files, append(old, vm.Datastore...)
		for _, d := range vm.Config.Hardware.Device {
			devices = append(devices, copyDevice(d))
		}
	})
	dstRoot := datastoreURL(dst)
	dir := escapeName(name)
	for n := 1; ; n++ {
		if _, err := os.Stat(filepath.Join(dstRoot, dir)); os.IsNotExist(err) {
			break
		}
		dir = fmt.Sprintf("%s (%d)", escapeName(name), n)
	}
	if err := os.MkdirAll(filepath.Join(dstRoot, dir), 0o700); err != nil {
		return &types.CannotCreateFile{FileFault: types.FileFault{File: dir}}
	}
	local := func(dsPath string) (string, bool) {
		var p object.DatastorePath
		if !p.FromString(dsPath) {
			return "", false
		}
		ds, ok := datastoreDir(vm.Self, p.Datastore)
		if !ok {
			return "", false
		}
		return filepath.Join(datastoreURL(ds), filepath.FromSlash(p.Path)), true
	}
	var moved []string
	copyTo := func(src string) (string, types.BaseMethodFault) {
		dst := filepath.Join(dstRoot, dir, filepath.Base(src))
		if err := sparseCopy(src, dst); err != nil {
			return "", &types.FileFault{File: src}
		}
		moved = append(moved, src)
		return dst, nil
	}
	for i, d := range devices {
		disk, ok := d.(*types.VirtualDisk)
		if !ok {
			continue
		}
		backing, ok := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo)
		if !ok {
			continue
		}
		info := backing.GetVirtualDeviceFileBackingInfo()
		src, ok := local(info.FileName)
		if !ok {
			return &types.FileNotFound{FileFault: types.FileFault{File: info.FileName}}
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return &types.FileNotFound{FileFault: types.FileFault{File: info.FileName}}
		}
		extents, _ := descriptorExtents(data)
		if len(extents) == 0 {
			extents = []string{strings.TrimSuffix(filepath.Base(src), ".vmdk") + "-flat.vmdk"}
		}
		for _, e := range extents {
			if _, fault := copyTo(filepath.Join(filepath.Dir(src), e)); fault != nil {
				return fault
			}
		}
		if _, fault := copyTo(src); fault != nil {
			return fault
		}
		// A shallow copy of the backing: the old object may still be read by a property collector.
		nb := reflect.New(reflect.TypeOf(disk.Backing).Elem())
		nb.Elem().Set(reflect.ValueOf(disk.Backing).Elem())
		newBacking := nb.Interface().(types.BaseVirtualDeviceBackingInfo)
		fb := newBacking.(types.BaseVirtualDeviceFileBackingInfo).GetVirtualDeviceFileBackingInfo()
		fb.FileName = "[" + dst.Name + "] " + path.Join(dir, filepath.Base(src))
		fb.Datastore = &dst.Self
		disk.Backing = newBacking
		devices[i] = disk
	}
	vmxName := ""
	if src, ok := local(files.VmPathName); ok {
		if info, err := os.Stat(src); err == nil && !info.IsDir() {
			if _, fault := copyTo(src); fault != nil {
				return fault
			}
			vmxName = filepath.Base(src)
			if _, err := os.Stat(filepath.Join(filepath.Dir(src), name+".nvram")); err == nil {
				_, _ = copyTo(filepath.Join(filepath.Dir(src), name+".nvram"))
			}
		}
	}
	if vmxName == "" {
		vmxName = escapeName(name) + ".vmx"
	}
	home := "[" + dst.Name + "] " + dir + "/"
	files.VmPathName = home + vmxName
	files.LogDirectory, files.SnapshotDirectory, files.SuspendDirectory = home, home, home
	simulator.Map.Update(vm, []types.PropertyChange{
		{Name: "config.hardware.device", Val: devices},
		{Name: "config.files", Val: files},
		{Name: "summary.config.vmPathName", Val: files.VmPathName},
		{Name: "datastore", Val: []types.ManagedObjectReference{dst.Self}},
	})
	for _, ref := range old {
		if ref != dst.Self {
			if ds, ok := simulator.Map.Get(ref).(*simulator.Datastore); ok {
				simulator.Map.Update(ds, []types.PropertyChange{{Name: "vm", Val: without(ds.Vm, vm.Self)}})
			}
		}
	}
	simulator.Map.AddReference(dst, &dst.Vm, vm.Self)
	simulator.Map.WithLock(vm, func() { vm.RefreshStorageInfo(ctx, &types.RefreshStorageInfo{This: vm.Self}) })
	for _, f := range moved {
		_ = os.Remove(f) // storage vMotion deletes the source; a read-only source keeps its files
	}
	return nil
}

// sparseCopy copies src to a new file dst, leaving holes where src has 1 MiB of zeros.
func sparseCopy(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	buf := make([]byte, 1<<20)
	zero := make([]byte, 1<<20)
	var size int64
	for {
		n, err := io.ReadFull(in, buf)
		if n > 0 {
			if bytes.Equal(buf[:n], zero[:n]) {
				if _, err := out.Seek(int64(n), io.SeekCurrent); err != nil {
					return err
				}
			} else if _, err := out.Write(buf[:n]); err != nil {
				return err
			}
			size += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
	}
	return out.Truncate(size)
}
