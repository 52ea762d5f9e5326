"""The kubelet device plugin (v1beta1): vhost-user socket folders, the dataplane resource, and vDPA pools."""
